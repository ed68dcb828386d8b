// The floor below the floor: bench/bare-proxy.mjs with undici's dispatch API instead of request() and one write
// per answer (Content-Length, not chunked). Gatehouse's relay calls upstream the same way
// (src/proxy/providers/upstream-call.ts); bench/proxy-overhead.mjs runs this beside it to show what a Node.js
// relay can reach at all on this machine.
// Its own time per request is kept as Gatehouse keeps its own, in the same buckets (two clock reads and one histogram
// observation, a fraction of a microsecond): the bench reads it at a fixed rate beside Gatehouse's, at GET /metrics.
// Run alone: node bench/bare-dispatch-proxy.mjs <upstream url>   (prints {"listening": url})
import http from "node:http";
import { Histogram, Registry } from "prom-client";
import { Agent } from "undici";
import { OWN_TIME_BUCKETS } from "../dist/metrics/metrics.js";

const registry = new Registry();
const ownTime = new Histogram({
  name: "gatehouse_overhead_duration_seconds",
  help: "own time: arrival to the upstream call, plus the upstream's last byte to the answer handed to the socket",
  labelNames: ["route"],
  buckets: OWN_TIME_BUCKETS,
  registers: [registry],
}).labels("/v1/chat/completions");

const upstream = new URL(process.argv[2]);
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
const server = http.createServer((req, res) => {
  if (req.method === "GET") {
    registry.metrics().then((text) => res.end(text));
    return;
  }
  const startedAt = performance.now();
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const out = [];
    let status = 502;
    let contentType = "application/json";
    const upstreamStartedAt = performance.now();
    let upstreamEndedAt = 0;
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
          upstreamEndedAt = performance.now();
          const body = out.length === 1 ? out[0] : Buffer.concat(out);
          res.writeHead(status, { "content-type": contentType, "content-length": body.length });
          res.end(body);
          ownTime.observe((upstreamStartedAt - startedAt + performance.now() - upstreamEndedAt) / 1000);
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
