// Spend logs at volume (docs/spend-logs.md). Three questions, each on a replica process of its own:
//  1. What does logging every request cost at saturation? wrk (32 connections, one thread) against a replica
//     with spend_logs.logging on and one with it off, interleaved rounds, the best of each; target ≥ 0.95.
//  2. Does a run of N requests yield exactly N rows? N requests from 16 clients that wait for every answer, the
//     rows of their key counted once flushed (wrk leaves requests in flight when it stops, uncounted).
//  3. Does a 30 s Postgres outage under load lose rows? The replica reaches Postgres through a TCP proxy that
//     refuses connections for 30 s while 8 clients keep the replica busy; afterwards rows == requests answered.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import pg from "pg";

const { createDatabase, printTable, redisNamespace, REDIS_URL, startReplica, startUpstreamProcess, writeBenchConfig, writeResult } = await import("./lib/harness.mjs");
const { wrk, wrkPath } = await import("./lib/wrk.mjs");
const { startTcpProxy, viaProxy } = await import("../test/support/tcp-proxy.mjs");

if (!wrkPath()) {
  console.error("bench/spend-logs.mjs needs wrk (apt-get install wrk)");
  process.exit(2);
}
const CONNECTIONS = 32;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const OUTAGE_SECONDS = Number(process.env.BENCH_OUTAGE_SECONDS ?? 30);

const upstream = await startUpstreamProcess();
const configFile = writeBenchConfig(upstream.url);
const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });
const cleanups = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// CPU seconds of every Postgres process on this machine (the database shares the 2 cores): where the cost goes.
const postgresCpu = { on: 0, off: 0 };
function postgresCpuSeconds() {
  const out = spawnSync("sh", ["-c", "for p in $(pgrep -x postgres); do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done"], { encoding: "utf8" }).stdout;
  return (
    out
      .split("\n")
      .filter(Boolean)
      .reduce((a, b) => a + Number(b), 0) / 100
  );
}

// CPU seconds of one process (the replica): its own share of the cost, beside Postgres's.
const replicaCpu = { on: 0, off: 0 };
function processCpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

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
  const replica = await startReplica(env, ["--config", configFile]);
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
  const best = { on: null, off: null };
  let completedOn = 0;
  let completedOff = 0;
  for (const t of [on, off]) await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: 2 });
  const warmupRows = await settledRows(on, 1, 10_000);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, t] of [
      ["on", on],
      ["off", off],
    ]) {
      const pgBefore = postgresCpuSeconds();
      const replicaBefore = processCpuSeconds(t.replica.child.pid);
      const w = await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: SECONDS });
      postgresCpu[name] += postgresCpuSeconds() - pgBefore;
      replicaCpu[name] += processCpuSeconds(t.replica.child.pid) - replicaBefore;
      if (name === "on") completedOn += w.requests;
      else completedOff += w.requests;
      if (!best[name] || w.rps > best[name].rps) best[name] = w;
    }
  }
  const rowsOn = (await settledRows(on, warmupRows + completedOn)) - warmupRows;
  const ratio = best.on.rps / best.off.rps;
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
    { what: "saturation, spend logs on (req/s)", value: Math.round(best.on.rps), target: "" },
    { what: "saturation, spend logs off (req/s)", value: Math.round(best.off.rps), target: "" },
    { what: "on / off", value: ratio.toFixed(3), target: "≥ 0.95" },
    { what: "Postgres CPU seconds per 1,000 requests, logs on", value: ((postgresCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "Postgres CPU seconds per 1,000 requests, logs off", value: ((postgresCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs on", value: ((replicaCpu.on / completedOn) * 1000).toFixed(3), target: "" },
    { what: "replica CPU seconds per 1,000 requests, logs off", value: ((replicaCpu.off / completedOff) * 1000).toFixed(3), target: "" },
    { what: `requests wrk completed with logs on (${ROUNDS} runs of ${SECONDS} s)`, value: completedOn, target: "" },
    { what: `rows written (wrk leaves up to ${CONNECTIONS} requests a run in flight, uncounted)`, value: rowsOn, target: "" },
    { what: "requests sent by clients that wait for every answer (all 200)", value: `${EXACT} (${answered200})`, target: "" },
    { what: "rows written for them", value: exactRows, target: "= requests" },
    { what: `requests completed across a ${OUTAGE_SECONDS} s Postgres outage (${total} s of load)`, value: w.requests, target: "" },
    { what: "rows written for them once Postgres returned", value: outageRows, target: "= requests (0 lost)" },
    { what: "non-2xx answers during the outage run", value: w.non2xx, target: "" },
  ];
  const text = printTable(`Spend logs (wrk, ${CONNECTIONS} connections, best of ${ROUNDS} interleaved rounds; load generator, upstream and replicas share 2 cores)`, table);
  writeResult("spend-logs", {
    rows: table,
    ratio,
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
