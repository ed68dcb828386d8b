// The soak: three replicas for SOAK_MINUTES (30) at SOAK_RATE (1,000) requests a second in all, half of them
// streamed, spend logs on, a key change every 100 ms, and one Redis restart half-way. Gateways leak slowly — a
// listener per request, a map that is never pruned, a socket never closed — and a leak shows only as a slope over
// time. Every 10 s each replica's RSS, heap, event-loop delay p99, open sockets and Postgres connections are read
// (from /proc and its /metrics); the report gives each as its value at minute 5, at the end, its slope, and the
// growth between the two (target: RSS growth under 5 %), with the errors of the whole run (target: 0).
//
//   npm run soak                              (30 minutes)
//   SOAK_MINUTES=2 SOAK_RATE=300 npm run soak  (a short run; the test suite runs one of 20 seconds)
//
// Redis is a server of the soak's own (a free port, nothing on disk), so restarting it disturbs nothing else.
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { Pool } from "undici";
import { freePort, waitForPort } from "../test/support/services.mjs";
import { createDatabase, printTable, startReplica, startUpstreamProcess, writeBenchConfig, writeResult } from "./lib/harness.mjs";

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const RATE = Number(process.env.SOAK_RATE ?? 1000);
const REPLICAS = 3;
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS ?? (MINUTES >= 5 ? 10_000 : 2_000));
const CHANGE_EVERY_MS = 100;
const LOAD_KEYS = 8;
const durationMs = MINUTES * 60_000;
// Growth is measured from here (the JIT, pools and caches have settled) to the end.
const SETTLED_MS = Math.min(5 * 60_000, durationMs / 6);

// The build under test: read now, since the checkout may move on during a long run.
const commit = (() => {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown (not a git checkout)";
  }
})();
const master = "sk-soak-master-key";
const db = await createDatabase();
const redisPort = await freePort();
const redisUrl = `redis://127.0.0.1:${redisPort}`;
let redis = await startRedis();
const upstream = await startUpstreamProcess();
const config = writeBenchConfig(upstream.url);
const env = { DATABASE_URL: db.url, REDIS_URL: redisUrl, GATEHOUSE_MASTER_KEY: master };
const replicas = [];
for (let i = 0; i < REPLICAS; i++) replicas.push(await startReplica(env, ["--config", config], ["--max-semi-space-size=32"]));
const pools = replicas.map((r) => new Pool(r.url, { connections: 16, keepAliveTimeout: 30_000 }));
// Stopped early (Ctrl-C): the processes it started go with it.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    for (const r of replicas) void r.stop("SIGKILL");
    upstream.child.kill("SIGKILL");
    try {
      process.kill(-redis.pid, "SIGKILL");
    } catch {}
    process.exit(130);
  });
}

const errors = { requests: 0, byStatus: {}, changes: 0, changeFailures: [] };
let sent = 0;
let answered = 0;
let changes = 0;
const samples = [];
const started = Date.now();

function startRedis() {
  const child = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore", detached: true });
  return waitForPort(redisPort, { what: "the soak's Redis" }).then(() => child);
}

async function admin(path, body, replica = 0) {
  const res = await pools[replica % REPLICAS].request({
    path,
    method: "POST",
    headers: { authorization: `Bearer ${master}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${path} answered ${res.statusCode}: ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

const keys = [];
for (let i = 0; i < LOAD_KEYS; i++) keys.push((await admin("/key/generate", { key_alias: `soak-${i}` })).key);

/** One request, its whole answer read; anything but a 200 is an error. */
async function oneRequest(n) {
  const stream = n % 2 === 1;
  const pool = pools[n % REPLICAS];
  sent++;
  try {
    const res = await pool.request({
      path: "/v1/chat/completions",
      method: "POST",
      headers: { authorization: `Bearer ${keys[n % LOAD_KEYS]}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: `soak ${n}` }] }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    await res.body.dump({ limit: 1 << 20 });
    if (res.statusCode === 200) answered++;
    else {
      errors.requests++;
      errors.byStatus[res.statusCode] = (errors.byStatus[res.statusCode] ?? 0) + 1;
    }
  } catch (err) {
    errors.requests++;
    const kind = err.code ?? err.name ?? "error";
    errors.byStatus[kind] = (errors.byStatus[kind] ?? 0) + 1;
  }
}

/**
 * A key change every 100 ms, on each replica in turn: every other one updates a key under load; the others walk
 * short-lived keys through their life (generated, blocked, deleted), one step at a time for each key, so no two
 * changes of one key race (the soak measures the gateway, not what the last of two racing changes leaves).
 */
const lifecycles = Array.from({ length: 16 }, () => ({ key: null, step: 0, busy: false }));
async function oneChange(n) {
  const replica = n % REPLICAS;
  const life = n % 2 === 0 ? undefined : lifecycles.find((l) => !l.busy);
  if (n % 2 === 1 && life === undefined) return; // every short-lived key has a change in flight: skip this tick
  try {
    if (life === undefined) await admin("/key/update", { key: keys[n % LOAD_KEYS], metadata: { soak_change: n } }, replica);
    else {
      life.busy = true;
      if (life.step === 0) life.key = (await admin("/key/generate", { metadata: { soak: true } }, replica)).key;
      else if (life.step === 1) await admin("/key/block", { key: life.key }, replica);
      else await admin("/key/delete", { keys: [life.key] }, replica);
      life.step = (life.step + 1) % 3;
    }
    changes++;
  } catch (err) {
    errors.changes++;
    if (errors.changeFailures.length < 10) errors.changeFailures.push(String(err.message ?? err).slice(0, 200));
  } finally {
    if (life) life.busy = false;
  }
}

/** What one replica looks like now: from /proc (RSS, sockets, connections to Postgres) and from its /metrics. */
async function sample(replica, index) {
  const pid = replica.child.pid;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssMb = Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {}
  }
  let postgres = 0;
  for (const file of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/${pid}/net/${file}`, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || !inodes.has(cols[9])) continue;
      if (Number.parseInt(cols[2].split(":")[1], 16) === 5432 && cols[3] === "01") postgres++;
    }
  }
  const res = await pools[index].request({ path: "/metrics", method: "GET", headers: { authorization: `Bearer ${master}` } });
  const text = await res.body.text();
  const metric = (name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  const space = (kind, name) => Number(new RegExp(`^gatehouse_nodejs_heap_space_size_${kind}_bytes\\{space="${name}"\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN) / 2 ** 20;
  return {
    replica: index,
    atMs: Date.now() - started,
    rssMb,
    heapMb: metric("gatehouse_nodejs_heap_size_used_bytes") / 2 ** 20,
    // What survives collections (a leak grows it), and the young generation's reserved size, which V8 grows in
    // steps up to --max-semi-space-size under load (RSS takes each step with it).
    oldSpaceMb: space("used", "old"),
    newSpaceMb: space("total", "new"),
    loopDelayP99Ms: metric("gatehouse_nodejs_eventloop_lag_p99_seconds") * 1000,
    sockets: inodes.size,
    postgres,
  };
}

// --- the run ---
let n = 0;
let changeN = 0;
let restarted = false;
let redisDownMs = 0;
const inflight = new Set();
const track = (p) => {
  inflight.add(p);
  void p.finally(() => inflight.delete(p));
};
const tick = 10;
const loads = setInterval(() => {
  // Open loop: the requests due by now are sent whether or not earlier ones have been answered.
  const due = Math.floor(((Date.now() - started) * RATE) / 1000);
  while (n < due) track(oneRequest(n++));
}, tick);
const changer = setInterval(() => track(oneChange(changeN++)), CHANGE_EVERY_MS);
const sampler = setInterval(() => {
  for (const [i, r] of replicas.entries())
    sample(r, i).then(
      (s) => samples.push(s),
      () => {},
    );
}, SAMPLE_MS);
const progress = setInterval(() => {
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`${minutes} min: ${answered} answered, ${errors.requests} request errors, ${changes} key changes (${errors.changes} failed)${restarted ? ", Redis restarted" : ""}`);
}, 60_000);

await new Promise((resolve) => setTimeout(resolve, durationMs / 2));
// Half-way: Redis goes away and comes back empty (nothing on disk), as a restart of a cache server does.
const downAt = Date.now();
redis.kill("SIGKILL");
await new Promise((resolve) => redis.once("exit", resolve));
redis = await startRedis();
redisDownMs = Date.now() - downAt;
restarted = true;
await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + durationMs - Date.now())));
clearInterval(loads);
clearInterval(changer);
clearInterval(sampler);
clearInterval(progress);
await Promise.allSettled([...inflight]);

// --- the report ---
function line(points, key) {
  // Least squares over the samples after the settling time: the value's slope per minute.
  const xs = points.map((p) => p.atMs / 60_000);
  const ys = points.map((p) => p[key]);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
const window = (points, fromMs, toMs) => points.filter((p) => p.atMs >= fromMs && p.atMs <= toMs);
const mean = (points, key) => points.reduce((a, p) => a + p[key], 0) / Math.max(1, points.length);
const rows = [];
const perReplica = [];
for (let i = 0; i < REPLICAS; i++) {
  const mine = samples.filter((s) => s.replica === i);
  const settled = mine.filter((s) => s.atMs >= SETTLED_MS);
  // Minute 5 and the last minute, each as the mean of the samples around it (one sample is noisy).
  const span = Math.max(SAMPLE_MS * 3, 30_000);
  const atStart = window(mine, SETTLED_MS - span / 2, SETTLED_MS + span / 2);
  const atEnd = window(mine, durationMs - span, durationMs + SAMPLE_MS);
  const result = { replica: i };
  for (const [key, label, unit] of [
    ["rssMb", "RSS", "MiB"],
    ["heapMb", "heap used", "MiB"],
    ["oldSpaceMb", "old space used", "MiB"],
    ["newSpaceMb", "young generation reserved", "MiB"],
    ["loopDelayP99Ms", "event-loop delay p99", "ms"],
    ["sockets", "open sockets", ""],
    ["postgres", "Postgres connections", ""],
  ]) {
    const first = mean(atStart, key);
    const last = mean(atEnd, key);
    const growth = first === 0 ? 0 : (100 * (last - first)) / first;
    result[key] = { first, last, slopePerMinute: line(settled, key), growthPercent: growth };
    rows.push({
      replica: `replica ${i + 1}`,
      measure: unit ? `${label} (${unit})` : label,
      [`at ${(SETTLED_MS / 60_000).toFixed(1)} min`]: first.toFixed(1),
      "at the end": last.toFixed(1),
      "slope / min": line(settled, key).toFixed(3),
      growth: `${growth >= 0 ? "+" : ""}${growth.toFixed(1)} %`,
      target: key === "rssMb" ? "< 5 %" : key === "loopDelayP99Ms" || key === "newSpaceMb" ? "" : "flat",
    });
  }
  perReplica.push(result);
}
const totals = [
  { what: "duration", value: `${MINUTES} min` },
  { what: "requests sent (half streamed)", value: sent },
  { what: "answered 200", value: answered },
  { what: "request errors", value: `${errors.requests} ${JSON.stringify(errors.byStatus)}` },
  { what: "key changes (every 100 ms)", value: changes },
  { what: "key changes failed", value: errors.changes },
  { what: "Redis restart", value: `at ${(MINUTES / 2).toFixed(1)} min, down ${redisDownMs} ms` },
  { what: "achieved rate", value: `${Math.round(sent / (durationMs / 1000))} req/s` },
];
const t1 = printTable(
  `Soak: ${REPLICAS} replicas, ${MINUTES} min, ${RATE} req/s in all, spend logs on, a key change every ${CHANGE_EVERY_MS} ms, Redis restarted half-way`,
  totals,
);
const t2 = printTable(`Each replica from minute ${(SETTLED_MS / 60_000).toFixed(1)} to the end (samples every ${SAMPLE_MS / 1000} s)`, rows);
if (errors.changeFailures.length > 0) console.log("first change failures:", errors.changeFailures);
writeResult(process.env.SOAK_RESULT ?? "soak", {
  commit,
  minutes: MINUTES,
  rate: RATE,
  sent,
  answered,
  errors,
  changes,
  redisDownMs,
  replicas: perReplica,
  samples,
  markdown: `${t1}\n\n${t2}`,
});

for (const pool of pools) await pool.close();
await Promise.all(replicas.map((r) => r.stop()));
upstream.child.kill();
try {
  process.kill(-redis.pid, "SIGKILL");
} catch {}
await db.drop();
process.exit(0);
