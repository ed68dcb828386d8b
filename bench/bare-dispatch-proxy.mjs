// The floor below the floor: bench/bare-proxy.mjs with undici's dispatch API instead of request() and one write
// per answer (Content-Length, not chunked). Gatehouse's relay calls upstream the same way
// (src/proxy/providers/upstream-call.ts); bench/proxy-overhead.mjs runs this beside it to show what a Node.js
// relay can reach at all on this machine.
// Run alone: node bench/bare-dispatch-proxy.mjs <upstream url>   (prints {"listening": url})
import http from "node:http";
import { Agent } from "undici";

const upstream = new URL(process.argv[2]);
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const out = [];
    let status = 502;
    let contentType = "application/json";
    agent.dispatch(
      { origin: upstream.origin, path: req.url, method: "POST", headers: { "content-type": "application/json" }, body: Buffer.concat(chunks) },
      {
        // The presence of onRequestStart tells undici this handler speaks its current API.
        onRequestStart() {},
        onResponseStart(_controller, statusCode, headers) {
          status = statusCode;
          contentType = headers["content-type"] ?? contentType;
        },
        onResponseData(_controller, chunk) {
          out.push(chunk);
        },
        onResponseEnd() {
          const body = out.length === 1 ? out[0] : Buffer.concat(out);
          res.writeHead(status, { "content-type": contentType, "content-length": body.length });
          res.end(body);
        },
        onResponseError() {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        },
      },
    );
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}` })));
