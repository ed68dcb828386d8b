// A CPU profile of one replica's L1-hit path at saturation: the profile docs/performance.md's cost breakdown is
// read from (allocation is measured by proxy-overhead.mjs, from --trace-gc). Writes the .cpuprofile into
// PROFILE_DIR (default /tmp/gatehouse-profile), prints the time per request of each part of the path (parse, auth,
// admission, upstream call, metering, spend-log row, access log, metrics, Node's HTTP server) and the top functions.
//   node bench/profile-hot-path.mjs            (plain)    PROFILE_STREAM=1 for streaming, PROFILE_GENERAL=1 for the
//   relay's general way only
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { benchGround, printTable, root, startBenchScript, startReplica, writeResult } from "./lib/harness.mjs";
import { wrk } from "./lib/wrk.mjs";

const DIR = process.env.PROFILE_DIR ?? "/tmp/gatehouse-profile";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const STREAM = process.env.PROFILE_STREAM === "1";
// PROFILE_FLOOR=1 profiles the feature floor instead (bench/feature-floor-proxy.mjs: the bare dispatch relay with
// Gatehouse's default per-request features written straight), its time split the same way.
const FLOOR = process.env.PROFILE_FLOOR === "1";
// PROFILE_GENERAL=1 profiles Gatehouse with every request sent the relay's general way (server.straight_path off).
const GENERAL = process.env.PROFILE_GENERAL === "1";
rmSync(DIR, { recursive: true, force: true });
mkdirSync(DIR, { recursive: true });

const ground = await benchGround();
const { config, master, env } = ground;
const nodeArgs = ["--max-semi-space-size=32", "--cpu-prof", `--cpu-prof-dir=${DIR}`];
let measured;
let runStartedNs = 0n;
let runEndedNs = 0n;
const gatehouse = await startReplica(GENERAL ? { ...env, GATEHOUSE_SERVER_STRAIGHT_PATH: "off" } : env, ["--config", config], FLOOR ? [] : nodeArgs);
let floor;
try {
  const created = await (
    await fetch(`${gatehouse.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
  ).json();
  if (FLOOR) floor = await startBenchScript("feature-floor-proxy.mjs", [ground.upstream.url, created.key], nodeArgs);
  const url = FLOOR ? floor.url : gatehouse.url;
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  const body = JSON.stringify({ model: "bench", stream: STREAM, messages: [{ role: "user", content: "Say hello" }] });
  await wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: 32, seconds: 2 });
  runStartedNs = process.hrtime.bigint();
  measured = await wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: 32, seconds: SECONDS });
  runEndedNs = process.hrtime.bigint();
  console.log(`${Math.round(measured.rps)} req/s, p50 ${measured.p50Ms} ms, p99 ${measured.p99Ms} ms, errors ${measured.errors + measured.non2xx}`);
} finally {
  if (floor) {
    floor.child.kill("SIGTERM"); // it exits on SIGTERM, writing its profile
    await floor.exited;
  }
  await gatehouse.stop();
  await ground.cleanup();
}

const file = readdirSync(DIR).find((f) => f.endsWith(".cpuprofile"));
if (!file) {
  console.log("no profile written");
  process.exit(0);
}
const profile = JSON.parse(readFileSync(path.join(DIR, file), "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);

// Only the samples of the measured run. A profile's timestamps are microseconds of the system's monotonic clock,
// the clock process.hrtime reads in this process too, so the run's start and end mark the window.
const times = [];
let t = profile.startTime;
for (const d of profile.timeDeltas) {
  t += d;
  times.push(t);
}
const windowStart = Number(runStartedNs / 1000n);
const windowEnd = Number(runEndedNs / 1000n);

/**
 * Who a sample's time belongs to: the nearest frame of Gatehouse's own code or of a package, walking up from the
 * sample's leaf (a native or Node-internal frame — JSON.parse, a socket write — is charged to the code that asked
 * for it). Samples with none of either on the stack are Node's HTTP server and sockets working for the client.
 */
const PARTS = [
  ["parse and check the request", /dist\/http\/request-body|dist\/proxy\/request-shape|dist\/proxy\/inbound\//],
  ["authenticate (sha256, L1)", /dist\/auth\/|dist\/http\/auth-middleware|dist\/http\/bearer|node_modules\/lru-cache/],
  ["admission and limits", /dist\/limits\/(limit-enforcer|request-limits|admission|local-limiter|redis-limiter|pricing|spend-ledger)|node_modules\/ioredis/],
  ["route and relay", /dist\/proxy\/(relay|attempts|model-router|routing-strategy|deployment-|sse)|dist\/models\//],
  ["upstream call (undici)", /dist\/proxy\/providers\/|node_modules\/undici/],
  ["usage metering", /dist\/limits\/usage-meter/],
  ["spend-log row", /dist\/store\/spend-log|dist\/spendlogs\/|dist\/http\/request-id|node_modules\/pg/],
  ["access log", /dist\/http\/access-log|dist\/http\/loggable-path|node_modules\/(pino|sonic-boom|thread-stream)/],
  ["metrics", /dist\/metrics\/|node_modules\/prom-client/],
  ["answer writing and request bookkeeping", /dist\/http\/(api-routes|error-mapping|request-id)/],
  ["other Gatehouse code", /dist\//],
  ["the feature floor's own code (every feature)", /bench\/feature-floor-proxy/],
  ["other packages", /node_modules\//],
];
const SOCKET_WRITES = new Set(["writev", "writeString", "writeBuffer", "writeUtf8String", "writeLatin1String", "writeAsciiString"]);
const partOf = new Map();
function classify(id) {
  if (partOf.has(id)) return partOf.get(id);
  const node = byId.get(id);
  const name = node.callFrame.functionName;
  let part;
  if (name === "(idle)") part = "idle (the CPU went to wrk, the upstream, other processes)";
  else if (name === "(garbage collector)") part = "garbage collection";
  else if (name === "(program)") part = "V8 and Node internals (no JS on the stack)";
  else if (SOCKET_WRITES.has(name) && node.callFrame.url === "") {
    // A write system call: the upstream's when undici asked for it, the client's otherwise.
    const parent = parentOf.get(id);
    part = parent !== undefined && classify(parent) === "upstream call (undici)" ? "socket writes to the upstream (system calls)" : "socket writes to the client (system calls)";
  } else {
    const url = node.callFrame.url;
    part = PARTS.find(([, re]) => re.test(url))?.[0];
    if (part === undefined) {
      const parent = parentOf.get(id);
      part = parent === undefined ? "Node's HTTP server and sockets (client side)" : classify(parent);
      if (part.startsWith("idle") || part === "garbage collection" || part.startsWith("V8 and")) part = "Node's HTTP server and sockets (client side)";
    }
  }
  partOf.set(id, part);
  return part;
}
const byPart = new Map();
let windowTotal = 0;
for (let i = 0; i < profile.samples.length; i++) {
  if (times[i] < windowStart || times[i] > windowEnd) continue;
  const dt = profile.timeDeltas[i + 1] ?? 0;
  windowTotal += dt;
  const part = classify(profile.samples[i]);
  byPart.set(part, (byPart.get(part) ?? 0) + dt);
}
const requests = (measured.rps * (windowEnd - windowStart)) / 1e6;
const rows = [...byPart]
  .sort((a, b) => b[1] - a[1])
  .map(([part, us]) => ({ part, "share of the process's time": `${((100 * us) / windowTotal).toFixed(1)} %`, "µs per request": (us / requests).toFixed(2) }));
const table = printTable(
  `Where ${FLOOR ? "the feature floor's" : GENERAL ? "one replica's (the general way only)" : "one replica's"} time goes at saturation (${STREAM ? "stream" : "plain"}, ${Math.round(measured.rps)} req/s, CPU profile of ${((windowEnd - windowStart) / 1e6).toFixed(1)} s)`,
  rows,
);
writeResult(`profile-hot-path-${FLOOR ? "floor-" : GENERAL ? "general-" : ""}${STREAM ? "stream" : "plain"}`, { rps: measured.rps, rows, markdown: table });

// The top functions by self time, for reading the profile further.
const self = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  if (times[i] < windowStart || times[i] > windowEnd) continue;
  const n = byId.get(profile.samples[i]);
  const fn = `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(`file://${root}/`, "").split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`;
  self.set(fn, (self.get(fn) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
}
console.log(
  `Top functions by self time:\n${[...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 40)
    .map(([f, us]) => `${((100 * us) / windowTotal).toFixed(1).padStart(5)} %  ${f}`)
    .join("\n")}`,
);
