// Spend logs at volume (docs/spend-logs.md). Three questions, each on a replica process of its own:
//  1. What does logging every request cost at saturation? wrk (32 connections, one thread) against a replica
//     with spend_logs.logging on and one with it off, in many short pairs (which goes first alternates); the
//     cost is the geometric mean of the pairs' on/off ratios, with its 95 % interval; target ≥ 0.95.
//     Why pairs: this machine's own speed wanders by ±10 % from one second to the next (the same loop of
//     arithmetic takes 430 to 650 ms), more than the 5 % being measured; a pair's two runs see nearly the same
//     machine, and thirty pairs bring the interval down to a percent or two. A best-of-N ratio would be biased.
//     And how much of that is the work being on the same cores, not in the replica? The replica with logs off,
//     in pairs of runs with and without another process writing the same rows into the same Postgres at the
//     same rate (bench/lib/spend-row-writer.mjs, stopped with SIGSTOP between its runs).
//  2. Does a run of N requests yield exactly N rows? N requests from 16 clients that wait for every answer, the
//     rows of their key counted once flushed (wrk leaves requests in flight when it stops, uncounted).
//  3. Does a 30 s Postgres outage under load lose rows? The replica reaches Postgres through a TCP proxy that
//     refuses connections for 30 s while 8 clients keep the replica busy; afterwards rows == requests answered.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";

const { createDatabase, printTable, redisNamespace, REDIS_URL, startReplica, startUpstreamProcess, writeBenchConfig, writeResult } = await import("./lib/harness.mjs");
const { wrk, wrkPath } = await import("./lib/wrk.mjs");
const { startTcpProxy, viaProxy } = await import("../test/support/tcp-proxy.mjs");

if (!wrkPath()) {
  console.error("bench/spend-logs.mjs needs wrk (apt-get install wrk)");
  process.exit(2);
}
const CONNECTIONS = 32;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const PAIRS = Number(process.env.BENCH_PAIRS ?? 30);
const OUTAGE_SECONDS = Number(process.env.BENCH_OUTAGE_SECONDS ?? 30);
// The young generation `npm start` gives the gateway (docs/performance.md): a replica runs here as it runs there.
const { YOUNG_GENERATION_FLAG } = await import("../dist/workers.js");

const upstream = await startUpstreamProcess();
const configFile = writeBenchConfig(upstream.url);
const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });
const cleanups = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// CPU seconds of every Postgres process on this machine (the database shares the 2 cores): where the cost goes.
// From /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU, as the scheduler counts them), not /proc/<pid>/stat's
// utime + stime, which charge a whole clock tick to whichever process runs when it falls. Counted per process
// between two readings, so a backend that exits meanwhile does not take its earlier CPU out of the sum.
const postgresCpu = { on: 0, off: 0 };
function cpuNanosOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => sum + Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]), 0);
  } catch {
    return 0; // gone
  }
}
function postgresCpuNow() {
  const pids = spawnSync("pgrep", ["-x", "postgres"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  return new Map(pids.map((pid) => [pid, cpuNanosOf(pid)]));
}
function postgresCpuSince(before) {
  let nanos = 0;
  for (const [pid, now] of postgresCpuNow()) nanos += now - (before.get(pid) ?? 0);
  return nanos / 1e9;
}

// CPU seconds of one process (the replica, every thread: its garbage collector's helpers too).
const replicaCpu = { on: 0, off: 0 };
const processCpuSeconds = (pid) => cpuNanosOf(pid) / 1e9;

async function replicaWith(extraEnv, databaseUrl) {
  const db = await createDatabase();
  const ns = redisNamespace();
  const masterKey = `sk-master-${randomUUID()}`;
  const env = {
    DATABASE_URL: databaseUrl ? databaseUrl(db.url) : db.url,
    DATABASE_LISTEN_URL: db.url,
    REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: ns.prefix,
    GATEHOUSE_MASTER_KEY: masterKey,
    ...extraEnv,
  };
  const replica = await startReplica(env, ["--config", configFile], [YOUNG_GENERATION_FLAG]);
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  cleanups.push(async () => {
    await replica.stop("SIGKILL");
    await pool.end();
    await db.drop();
    await ns.cleanup();
  });
  const res = await fetch(`${replica.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${masterKey}`, "content-type": "application/json" }, body: "{}" });
  const key = await res.json();
  const headers = { authorization: `Bearer ${key.key}`, "content-type": "application/json" };
  return { replica, pool, key, headers, url: `${replica.url}/v1/chat/completions` };
}

/** The geometric mean of ratios given as logarithms, with its 95 % interval (Student's t; 2.03 is its value near 35 degrees of freedom). */
function geometricMean(logs) {
  const m = logs.reduce((a, b) => a + b, 0) / logs.length;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - m) ** 2, 0) / (logs.length - 1));
  const halfWidth = (2.03 * sd) / Math.sqrt(logs.length);
  return { ratio: Math.exp(m), interval: [Math.exp(m - halfWidth), Math.exp(m + halfWidth)] };
}

async function rowsOf(target) {
  const { rows } = await target.pool.query("SELECT count(*)::int AS n FROM gh_spend_logs WHERE key_id = $1", [target.key.key_id]);
  return rows[0].n;
}

async function settledRows(target, expected, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let n = await rowsOf(target);
  while (n < expected && Date.now() < deadline) {
    await sleep(250);
    n = await rowsOf(target);
  }
  await sleep(1_500); // and nothing more arrives after
  return rowsOf(target);
}

try {
  // 1 and 2.
  const on = await replicaWith({});
  const off = await replicaWith({ GATEHOUSE_SPEND_LOGS_LOGGING: "off" });
  const throughput = { on: [], off: [] };
  const logRatios = [];
  let completedOn = 0;
  let completedOff = 0;
  for (const t of [on, off]) await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: 2 });
  const warmupRows = await settledRows(on, 1, 10_000);
  for (let pair = 0; pair < PAIRS; pair++) {
    const rps = {};
    for (const name of pair % 2 === 0 ? ["on", "off"] : ["off", "on"]) {
      const t = name === "on" ? on : off;
      const pgBefore = postgresCpuNow();
      const replicaBefore = processCpuSeconds(t.replica.child.pid);
      const w = await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: SECONDS });
      postgresCpu[name] += postgresCpuSince(pgBefore);
      replicaCpu[name] += processCpuSeconds(t.replica.child.pid) - replicaBefore;
      if (name === "on") completedOn += w.requests;
      else completedOff += w.requests;
      throughput[name].push(w.rps);
      rps[name] = w.rps;
    }
    logRatios.push(Math.log(rps.on / rps.off));
  }
  const rowsOn = (await settledRows(on, warmupRows + completedOn)) - warmupRows;
  const { ratio, interval } = geometricMean(logRatios);
  const medianRatio = Math.exp([...logRatios].sort((a, b) => a - b)[Math.floor(PAIRS / 2)]);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // 1b. The same writes from another process, beside the replica with logs off.
  const writerDb = await createDatabase();
  cleanups.push(() => writerDb.drop());
  const writer = spawn(process.execPath, [new URL("./lib/spend-row-writer.mjs", import.meta.url).pathname, writerDb.url, String(Math.round(mean(throughput.on)))], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  cleanups.push(async () => {
    writer.kill("SIGCONT");
    writer.kill("SIGKILL");
  });
  await new Promise((resolve, reject) => {
    writer.stdout.once("data", resolve);
    writer.once("exit", (code) => reject(new Error(`the row writer exited (${code})`)));
  });
  const besideLogs = [];
  for (let pair = 0; pair < PAIRS; pair++) {
    const rps = {};
    for (const name of pair % 2 === 0 ? ["busy", "quiet"] : ["quiet", "busy"]) {
      writer.kill(name === "busy" ? "SIGCONT" : "SIGSTOP");
      rps[name] = (await wrk({ url: off.url, headers: off.headers, body, connections: CONNECTIONS, seconds: SECONDS })).rps;
    }
    besideLogs.push(Math.log(rps.busy / rps.quiet));
  }
  writer.kill("SIGCONT");
  writer.kill("SIGKILL");
  const beside = geometricMean(besideLogs);

  // wrk stops with requests in flight (up to one per connection) that it does not count; for an exact count,
  // N requests from clients that wait for every answer, on a fresh key.
  const exact = await replicaWith({});
  const EXACT = Number(process.env.BENCH_EXACT_REQUESTS ?? 10_000);
  let sent = 0;
  let answered200 = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (sent < EXACT) {
        sent++;
        const res = await fetch(exact.url, { method: "POST", headers: exact.headers, body });
        await res.arrayBuffer();
        if (res.status === 200) answered200++;
      }
    }),
  );
  const exactRows = await settledRows(exact, EXACT);

  // 3.
  const proxy = await startTcpProxy("127.0.0.1", 5432);
  cleanups.push(() => proxy.close());
  const outage = await replicaWith({}, (url) => viaProxy(url, proxy));
  await wrk({ url: outage.url, headers: outage.headers, body, connections: 4, seconds: 1 });
  const before = await settledRows(outage, 1, 10_000);
  const total = OUTAGE_SECONDS + 10;
  // Clients that wait for every answer: each request is counted by its answer, none left in flight.
  const stopAt = Date.now() + total * 1000;
  const w = { requests: 0, non2xx: 0 };
  const load = Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() < stopAt) {
        const res = await fetch(outage.url, { method: "POST", headers: outage.headers, body });
        await res.arrayBuffer();
        w.requests++;
        if (res.status !== 200) w.non2xx++;
      }
    }),
  );
  await sleep(5_000);
  proxy.setMode("reject");
  proxy.cutAll();
  await sleep(OUTAGE_SECONDS * 1000);
  proxy.setMode("pass");
  await load;
  const outageRows = (await settledRows(outage, before + w.requests)) - before;

  const table = [
    { what: `saturation, spend logs on (req/s, mean of ${PAIRS} runs of ${SECONDS} s)`, value: Math.round(mean(throughput.on)), target: "" },
    { what: `saturation, spend logs off (req/s, mean of ${PAIRS} runs of ${SECONDS} s)`, value: Math.round(mean(throughput.off)), target: "" },
    { what: "on / off (geometric mean of the pairs' ratios)", value: ratio.toFixed(3), target: "≥ 0.95" },
    { what: "95 % interval of that mean", value: `${interval[0].toFixed(3)} – ${interval[1].toFixed(3)}`, target: "" },
    { what: "on / off, median pair", value: medianRatio.toFixed(3), target: "" },
    {
      what: "logs off, beside another process writing the same rows (with / without it)",
      value: `${beside.ratio.toFixed(3)} (${beside.interval[0].toFixed(3)} – ${beside.interval[1].toFixed(3)})`,
      target: "",
    },
    { what: "Postgres CPU seconds per 1,000 requests, logs on", value: ((postgresCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "Postgres CPU seconds per 1,000 requests, logs off", value: ((postgresCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs on", value: ((replicaCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs off", value: ((replicaCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    { what: `requests wrk completed with logs on (${PAIRS} runs of ${SECONDS} s)`, value: completedOn, target: "" },
    { what: `rows written (wrk leaves up to ${CONNECTIONS} requests a run in flight, uncounted)`, value: rowsOn, target: "" },
    { what: "requests sent by clients that wait for every answer (all 200)", value: `${EXACT} (${answered200})`, target: "" },
    { what: "rows written for them", value: exactRows, target: "= requests" },
    { what: `requests completed across a ${OUTAGE_SECONDS} s Postgres outage (${total} s of load)`, value: w.requests, target: "" },
    { what: "rows written for them once Postgres returned", value: outageRows, target: "= requests (0 lost)" },
    { what: "non-2xx answers during the outage run", value: w.non2xx, target: "" },
  ];
  const text = printTable(`Spend logs (wrk, ${CONNECTIONS} connections, ${PAIRS} pairs of on/off runs; load generator, upstream, Postgres and replicas share 2 cores)`, table);
  const pct = (r) => `${((1 - r) * 100).toFixed(1)} %`;
  const note = [
    `Logging every request costs ${pct(ratio)} of saturation here (95 % interval ${pct(interval[1])} to ${pct(interval[0])}; target ≤ 5 %),`,
    "with Postgres on the same 2 cores as the replica, the upstream and wrk. The ratio is the geometric mean of",
    `${PAIRS} interleaved pairs of ${SECONDS} s runs: this machine's speed wanders by ±10 % from one second to the next, so one`,
    `pair says little. The same rows written by another process, the replica logging nothing, cost it ${pct(beside.ratio)}`,
    `(${pct(beside.interval[1])} to ${pct(beside.interval[0])}). CPU is read from the scheduler (every thread of each process).`,
    'Runs differ by more than their intervals say: docs/spend-logs.md, "Cost".',
  ].join("\n");
  writeResult("spend-logs", {
    note,
    rows: table,
    ratio,
    ratio_interval: interval,
    ratio_median: medianRatio,
    beside_writer_ratio: beside.ratio,
    beside_writer_interval: beside.interval,
    pair_log_ratios: logRatios,
    completed_on: completedOn,
    rows_on: rowsOn,
    exact_requests: EXACT,
    exact_rows: exactRows,
    outage_requests: w.requests,
    outage_rows: outageRows,
    markdown: text,
  });
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  upstream.child.kill("SIGKILL");
}
