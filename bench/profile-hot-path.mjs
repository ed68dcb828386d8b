// A CPU profile (and, with PROFILE_HEAP=1, a sampling heap profile) of one replica's L1-hit path at saturation:
// the profile docs/performance.md's cost breakdown is read from. Writes .cpuprofile / .heapprofile files into
// PROFILE_DIR (default /tmp/gatehouse-profile) and prints the top self-time entries grouped by module.
//   node bench/profile-hot-path.mjs            (plain)    PROFILE_STREAM=1 for streaming
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { createDatabase, redisNamespace, REDIS_URL, root, startReplica, startUpstreamProcess, writeBenchConfig } from "./lib/harness.mjs";
import { wrk } from "./lib/wrk.mjs";

const DIR = process.env.PROFILE_DIR ?? "/tmp/gatehouse-profile";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const STREAM = process.env.PROFILE_STREAM === "1";
rmSync(DIR, { recursive: true, force: true });
mkdirSync(DIR, { recursive: true });

const db = await createDatabase();
const ns = redisNamespace();
const upstream = await startUpstreamProcess();
const config = writeBenchConfig(upstream.url);
const master = "sk-bench-master-key";
const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: master };
const nodeArgs = ["--max-semi-space-size=32", "--cpu-prof", `--cpu-prof-dir=${DIR}`];
if (process.env.PROFILE_HEAP === "1") nodeArgs.push("--heap-prof", `--heap-prof-dir=${DIR}`, "--heap-prof-interval=4096");
const gatehouse = await startReplica(env, ["--config", config], nodeArgs);
try {
  const created = await (
    await fetch(`${gatehouse.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
  ).json();
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  const body = JSON.stringify({ model: "bench", stream: STREAM, messages: [{ role: "user", content: "Say hello" }] });
  await wrk({ url: `${gatehouse.url}/v1/chat/completions`, headers, body, connections: 32, seconds: 2 });
  const w = await wrk({ url: `${gatehouse.url}/v1/chat/completions`, headers, body, connections: 32, seconds: SECONDS });
  console.log(`${Math.round(w.rps)} req/s, p50 ${w.p50Ms} ms, p99 ${w.p99Ms} ms, errors ${w.errors + w.non2xx}`);
} finally {
  await gatehouse.stop();
  upstream.child.kill();
  await ns.cleanup?.();
  await db.drop?.();
}

const file = readdirSync(DIR).find((f) => f.endsWith(".cpuprofile"));
if (!file) {
  console.log("no profile written");
  process.exit(0);
}
const profile = JSON.parse(readFileSync(path.join(DIR, file), "utf8"));
const self = new Map(profile.nodes.map((n) => [n.id, 0]));
const dt = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (dt[i] ?? 0));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byGroup = new Map();
const byFn = new Map();
for (const n of profile.nodes) {
  const t = self.get(n.id) ?? 0;
  const url = n.callFrame.url.replace(`file://${root}/`, "");
  const group = url.includes("node_modules/")
    ? url.replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, "$1")
    : url.startsWith("node:")
      ? url
      : url.startsWith("dist/")
        ? url
        : `(${n.callFrame.functionName || "native"})`;
  byGroup.set(group, (byGroup.get(group) ?? 0) + t);
  const fn = `${n.callFrame.functionName || "(anonymous)"} ${url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + t);
}
const top = (m, k) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, t]) => `${((100 * t) / total).toFixed(1).padStart(5)} %  ${name}`)
    .join("\n");
console.log(`\nSelf time by module (${file}):\n${top(byGroup, 45)}\n\nBy function:\n${top(byFn, 60)}`);
