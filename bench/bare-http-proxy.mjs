// The bare relay as the performance targets name it: node:http in, node:http out through a keep-alive agent, no
// routing framework, no auth, no logging. bench/proxy-overhead.mjs runs it beside Gatehouse and the undici relays.
// Run alone: node bench/bare-http-proxy.mjs <upstream url>   (prints {"listening": url})
import http from "node:http";

const upstream = new URL(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const call = http.request(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: "POST", agent, headers: { "content-type": "application/json", "content-length": body.length } },
      (up) => {
        res.writeHead(up.statusCode, { "content-type": up.headers["content-type"] ?? "application/json" });
        up.pipe(res);
      },
    );
    call.on("error", () => res.writeHead(502).end());
    call.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}` })));
