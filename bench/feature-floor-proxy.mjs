// The floor for a gateway with Gatehouse's per-request features, in Node.js: the bare dispatch relay
// (bench/bare-dispatch-proxy.mjs) plus the least each default feature can cost, written straight, with nothing
// shared between them and none of a real gateway's generality (one route, one model, one key, no limits, no
// retries, no error shapes). What it does per request, as Gatehouse does on its hot path:
//   - a request id (a UUID) and the arrival time;
//   - the bearer's sha256 and a look-up of the key by its hash;
//   - the body read and parsed (JSON.parse), its model checked and looked up;
//   - the upstream call with the deployment's credentials;
//   - the answer taken whole, its usage read from its tail (JSON.parse of the usage object) and priced;
//   - the answer written in one write with x-request-id and the routing header;
//   - one access-log line (the fields Gatehouse writes) to stdout, through the destination Gatehouse's log uses;
//   - one spend-log row encoded for COPY and queued (the flush to Postgres is left out: it would only add the
//     database's CPU, which this floor does not count);
//   - the metrics Gatehouse records per request, through its own Metrics (src/metrics/metrics.ts).
// bench/proxy-overhead.mjs runs it beside Gatehouse: whatever Gatehouse does beyond this is its own structure.
// Run alone: node bench/feature-floor-proxy.mjs <upstream url> [key]   (prints {"listening": url})
import { createHash, randomUUID } from "node:crypto";
import http from "node:http";
import { Agent } from "undici";
import { stdoutDestination } from "../dist/logger.js";
import { Metrics } from "../dist/metrics/metrics.js";

const upstream = new URL(process.argv[2]);
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
// The key wrk sends (the one Gatehouse was given in the same run), known here by its hash only.
const KEY = process.argv[3] ?? "sk-floor-0000000000000000000000000000";
const keys = new Map([[createHash("sha256").update(KEY).digest("hex"), { keyName: `sk-...${KEY.slice(-4)}`, blocked: false, expires: Infinity }]]);
const deployments = new Map([["bench", { id: "bench-0", upstreamKey: "sk-upstream", inputCost: 1e-6, outputCost: 2e-6 }]]);
// Gatehouse's own metrics, recorded as it records them (a counter and two histograms per request); the bench reads
// this relay's own time the way it reads Gatehouse's (GET /metrics).
const metrics = new Metrics();
const recorder = metrics.route("/v1/chat/completions");
const log = stdoutDestination(); // stdout, as Gatehouse writes its access log
const spendRows = [];
setInterval(() => (spendRows.length = 0), 1000).unref();

const fail = (res, status) =>
  res.writeHead(status, { "content-type": "application/json" }).end('{"error":{"message":"refused","type":"invalid_request_error","param":null,"code":null}}');

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url.startsWith("/metrics")) {
    metrics.registry.metrics().then((text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text));
    return;
  }
  const startedAt = performance.now();
  const startedWall = Date.now();
  const requestId = randomUUID();
  const bearer = req.headers.authorization;
  const key = typeof bearer === "string" && bearer.startsWith("Bearer ") ? keys.get(createHash("sha256").update(bearer.slice(7)).digest("hex")) : undefined;
  if (key === undefined || key.blocked || key.expires < startedWall) return fail(res, 401);
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    let body;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      return fail(res, 400);
    }
    const deployment = typeof body?.model === "string" ? deployments.get(body.model) : undefined;
    if (deployment === undefined) return fail(res, 404);
    const out = [];
    let status = 502;
    // Where the own time pauses, as Gatehouse's does: when the call is handed to undici.
    const upstreamStartedAt = performance.now();
    let upstreamEndedAt = 0;
    agent.dispatch(
      {
        origin: upstream.origin,
        path: req.url,
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${deployment.upstreamKey}` },
        body: raw,
      },
      {
        // The presence of onRequestStart tells undici this handler speaks its current API.
        onRequestStart() {},
        onResponseStart(_controller, statusCode) {
          status = statusCode;
        },
        onResponseData(_controller, chunk) {
          out.push(chunk);
        },
        onResponseEnd() {
          upstreamEndedAt = performance.now();
          const answer = out.length === 1 ? out[0] : Buffer.concat(out);
          const tail = answer.toString("latin1", Math.max(0, answer.length - 4096));
          const at = tail.lastIndexOf('"usage":');
          const usage = at === -1 ? undefined : JSON.parse(tail.slice(at + 8, tail.indexOf("}", at) + 1));
          const cost = usage ? usage.prompt_tokens * deployment.inputCost + usage.completion_tokens * deployment.outputCost : 0;
          res.writeHead(status, ["x-request-id", requestId, "x-gateway-deployment", deployment.id, "content-type", "application/json", "content-length", String(answer.length)]);
          res.end(answer);
          const answeredAt = performance.now();
          const seconds = (answeredAt - startedAt) / 1000;
          recorder.finished(body.model, status, seconds, (upstreamStartedAt - startedAt + answeredAt - upstreamEndedAt) / 1000);
          log.write(
            `{"level":30,"time":${Date.now()},"request_id":"${requestId}","method":"POST","route":"/v1/chat/completions","path":${JSON.stringify(req.url)},"status":${status},"latency_ms":${Math.round(seconds * 100_000) / 100},"key_name":"${key.keyName}","model":"${body.model}","msg":"request"}\n`,
          );
          spendRows.push(
            `${requestId}\t${key.keyName}\t${body.model}\t${deployment.id}\t${new Date(startedWall).toISOString()}\t${new Date().toISOString()}\t${usage?.prompt_tokens ?? 0}\t${usage?.completion_tokens ?? 0}\t${cost}\t${status}\n`,
          );
        },
        onResponseError() {
          if (!res.headersSent) fail(res, 502);
          else res.destroy();
        },
      },
    );
  });
});
server.keepAliveTimeout = 65_000;
process.on("SIGTERM", () => process.exit(0)); // an exit, not a kill: a --cpu-prof profile is written on exit
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}` })));
