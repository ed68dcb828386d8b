// The floor for any Node.js gateway on this machine: node:http in, undici out, no routing framework,
// no auth, no logging. bench/proxy-overhead.mjs runs it beside Gatehouse so the difference between the
// two is what Express and Gatehouse's own work cost (docs/performance.md).
// Run alone: node bench/bare-proxy.mjs <upstream url>   (prints {"listening": url})
import http from "node:http";
import { Agent, request } from "undici";

const upstream = process.argv[2];
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    try {
      const up = await request(`${upstream}${req.url.replace(/^\/v1/, "/v1")}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: Buffer.concat(chunks),
        dispatcher: agent,
      });
      res.writeHead(up.statusCode, { "content-type": up.headers["content-type"] ?? "application/json" });
      for await (const chunk of up.body) res.write(chunk);
      res.end();
    } catch {
      res.writeHead(502).end();
    }
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}` })));
