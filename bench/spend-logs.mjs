// Spend logs at volume (docs/spend-logs.md). Three questions, each on a replica process of its own:
//  1. What does logging every request cost at saturation? wrk (32 connections, one thread) against three arms,
//     in many short rounds (which arm goes first rotates):
//       on    a replica with spend_logs.logging on;
//       off   a replica with it off;
//       busy  the same replica with it off, while another process (bench/lib/spend-row-writer.mjs) writes as many
//             rows into the same Postgres as the replica with logs on last wrote, the way its flush writes them.
//     Postgres shares this machine's 2 cores with the replicas, the upstream and wrk (in production it has a host
//     of its own), so on/off is what logging costs this whole machine: the gateway's work and the database's.
//     busy/off is the database's part: Postgres's work on the shared cores, done for another process.
//     on/busy is the gateway's own cost — Postgres does the same work in both arms — and the ≥ 0.95 target.
//     Each ratio is the geometric mean of the rounds' ratios, with its 95 % interval. Why rounds of short runs:
//     this machine's own speed wanders by ±10 % from one second to the next (the same loop of arithmetic takes
//     430 to 650 ms), more than the 5 % being measured; a round's runs see nearly the same machine, and forty
//     rounds bring the interval down to a few percent. A best-of-N ratio would be biased.
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
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 40);
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
  // 1.
  const on = await replicaWith({});
  const off = await replicaWith({ GATEHOUSE_SPEND_LOGS_LOGGING: "off" });
  const warmup = [];
  for (const t of [on, off, on]) warmup.push((await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: SECONDS })).rps);
  let lastOnRate = warmup[2];
  const warmupRows = await settledRows(on, 1, 10_000);
  const writerDb = await createDatabase();
  cleanups.push(() => writerDb.drop());
  // Every row the writer will send is encoded before it starts (what it costs while it writes is only the sending),
  // with room for the machine running twice as fast as in the warm-up.
  const prepare = Math.round(Math.max(...warmup) * 2 * SECONDS * ROUNDS);
  const writer = spawn(process.execPath, [new URL("./lib/spend-row-writer.mjs", import.meta.url).pathname, writerDb.url, String(Math.round(lastOnRate)), String(prepare)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  cleanups.push(async () => {
    writer.kill("SIGCONT");
    writer.kill("SIGKILL");
  });
  await new Promise((resolve, reject) => {
    writer.stdout.once("data", resolve);
    writer.once("exit", (code) => reject(new Error(`the row writer exited (${code})`)));
  });
  writer.kill("SIGSTOP");
  const ARMS = ["on", "off", "busy"];
  const throughput = { on: [], off: [], busy: [] };
  const logRatios = { onOff: [], busyOff: [], onBusy: [] };
  const writerCpu = { seconds: 0, rows: 0, requests: 0, replicaSeconds: 0 };
  let completedOn = 0;
  let completedOff = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const rps = {};
    for (let i = 0; i < ARMS.length; i++) {
      const name = ARMS[(round + i) % ARMS.length];
      const t = name === "on" ? on : off;
      if (name === "busy") {
        // As many rows a second as the replica with logs on wrote in its last run.
        writer.stdin.write(`${Math.round(lastOnRate)}\n`);
        writer.kill("SIGCONT");
      }
      const pgBefore = postgresCpuNow();
      const replicaBefore = processCpuSeconds(t.replica.child.pid);
      const writerBefore = processCpuSeconds(writer.pid);
      const w = await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: SECONDS });
      if (name === "busy") {
        writer.kill("SIGSTOP");
        writerCpu.seconds += processCpuSeconds(writer.pid) - writerBefore;
        writerCpu.rows += lastOnRate * SECONDS;
        writerCpu.requests += w.requests;
        writerCpu.replicaSeconds += processCpuSeconds(t.replica.child.pid) - replicaBefore;
      } else {
        postgresCpu[name] += postgresCpuSince(pgBefore);
        replicaCpu[name] += processCpuSeconds(t.replica.child.pid) - replicaBefore;
      }
      if (name === "on") {
        completedOn += w.requests;
        lastOnRate = w.rps;
      }
      if (name === "off") completedOff += w.requests;
      throughput[name].push(w.rps);
      rps[name] = w.rps;
    }
    logRatios.onOff.push(Math.log(rps.on / rps.off));
    logRatios.busyOff.push(Math.log(rps.busy / rps.off));
    logRatios.onBusy.push(Math.log(rps.on / rps.busy));
  }
  writer.kill("SIGCONT");
  writer.kill("SIGKILL");
  const rowsOn = (await settledRows(on, warmupRows + completedOn)) - warmupRows;
  const whole = geometricMean(logRatios.onOff);
  const database = geometricMean(logRatios.busyOff);
  const beyondHandover = geometricMean(logRatios.onBusy);
  // In the busy arm the other writer hands the rows to Postgres (its socket, the kernel, the client's round trips):
  // the replica with logs on pays that itself. Its CPU per row, as a share of the replica's CPU per request in the
  // same runs, is added to the cost on/busy shows: an upper bound of the gateway's cost (on/busy already counts a
  // part of it, what the writer's CPU took from the replica).
  const handover = writerCpu.seconds / Math.max(writerCpu.rows, 1) / (writerCpu.replicaSeconds / Math.max(writerCpu.requests, 1));
  const gateway = { ratio: beyondHandover.ratio - handover, interval: beyondHandover.interval.map((r) => r - handover) };
  const median = (logs) => Math.exp([...logs].sort((a, b) => a - b)[Math.floor(logs.length / 2)]);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

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

  const interval = (r) => `${r.ratio.toFixed(3)} (${r.interval[0].toFixed(3)} – ${r.interval[1].toFixed(3)})`;
  const table = [
    { what: `saturation, spend logs on (req/s, mean of ${ROUNDS} runs of ${SECONDS} s)`, value: Math.round(mean(throughput.on)), target: "" },
    { what: `saturation, spend logs off (req/s, mean of ${ROUNDS} runs of ${SECONDS} s)`, value: Math.round(mean(throughput.off)), target: "" },
    { what: "saturation, logs off while another process writes as many rows (req/s)", value: Math.round(mean(throughput.busy)), target: "" },
    { what: "on / off beside the same rows (95 % interval)", value: interval(beyondHandover), target: "" },
    { what: "on / off beside the same rows, median round", value: median(logRatios.onBusy).toFixed(3), target: "" },
    { what: "handing the rows over: the other writer's CPU per row / the replica's per request", value: `${(handover * 100).toFixed(1)} %`, target: "" },
    { what: "the gateway's own cost, counting all of the handing over (at most)", value: interval(gateway), target: "≥ 0.95" },
    { what: "this whole machine: on / off (gateway and Postgres on 2 shared cores)", value: interval(whole), target: "" },
    { what: "the database's part: off beside the rows / off", value: interval(database), target: "" },
    { what: "Postgres CPU seconds per 1,000 requests, logs on", value: ((postgresCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "Postgres CPU seconds per 1,000 requests, logs off", value: ((postgresCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs on", value: ((replicaCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs off", value: ((replicaCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    {
      what: "the other writer's CPU seconds per 1,000 rows (sending only: every row encoded before)",
      value: ((writerCpu.seconds / Math.max(writerCpu.rows, 1)) * 1000).toFixed(3),
      target: "",
    },
    { what: `requests wrk completed with logs on (${ROUNDS} runs of ${SECONDS} s)`, value: completedOn, target: "" },
    { what: `rows written (wrk leaves up to ${CONNECTIONS} requests a run in flight, uncounted)`, value: rowsOn, target: "" },
    { what: "requests sent by clients that wait for every answer (all 200)", value: `${EXACT} (${answered200})`, target: "" },
    { what: "rows written for them", value: exactRows, target: "= requests" },
    { what: `requests completed across a ${OUTAGE_SECONDS} s Postgres outage (${total} s of load)`, value: w.requests, target: "" },
    { what: "rows written for them once Postgres returned", value: outageRows, target: "= requests (0 lost)" },
    { what: "non-2xx answers during the outage run", value: w.non2xx, target: "" },
  ];
  const text = printTable(
    `Spend logs (wrk, ${CONNECTIONS} connections, ${ROUNDS} rounds of on, off and off-beside-the-rows runs; load generator, upstream, Postgres and replicas share 2 cores)`,
    table,
  );
  const pct = (r) => `${((1 - r) * 100).toFixed(1)} %`;
  const range = (r) => `${pct(r.ratio)} (95 % interval ${pct(r.interval[1])} to ${pct(r.interval[0])})`;
  const note = [
    `Logging every request costs the gateway ${range(gateway)} of its saturation throughput`,
    "(target ≤ 5 %): the replica with logs on against the same replica with logs off while another process writes",
    "as many rows into the same Postgres, so that the database does the same work in both, plus all that process",
    `spends handing the rows over (${(handover * 100).toFixed(1)} % of the replica's CPU per request), which the gateway pays itself.`,
    "On this machine Postgres shares the 2 cores with the replicas, the upstream and wrk, and its work costs them",
    `too: logging costs the whole machine ${range(whole)}, of which the database's work alone,`,
    `done for another process, is ${range(database)}.`,
    `Each figure is the geometric mean of ${ROUNDS} rounds of ${SECONDS} s runs (the machine's speed wanders by ±10 % from`,
    "one second to the next). CPU is read from the scheduler (every thread of each process).",
  ].join("\n");
  writeResult("spend-logs", {
    note,
    rows: table,
    gateway_ratio: gateway.ratio,
    gateway_interval: gateway.interval,
    beside_rows_ratio: beyondHandover.ratio,
    beside_rows_interval: beyondHandover.interval,
    handover_share: handover,
    whole_machine_ratio: whole.ratio,
    whole_machine_interval: whole.interval,
    database_ratio: database.ratio,
    database_interval: database.interval,
    round_log_ratios: logRatios,
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
