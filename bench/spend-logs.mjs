// Spend logs at volume (docs/spend-logs.md). Three questions, each on a replica process of its own:
//  1. What does logging every request cost at saturation? wrk (32 connections, one thread) against a replica
//     with spend_logs.logging on and one with it off, interleaved rounds, the best of each; target ≥ 0.95.
//  2. Does a run of N requests yield exactly N rows? The rows of the "on" runs' key, counted once flushed,
//     against the requests wrk completed.
//  3. Does a 30 s Postgres outage under load lose rows? The replica reaches Postgres through a TCP proxy that
//     refuses connections for 30 s while wrk keeps the replica busy; afterwards rows == requests completed.
import { randomUUID } from "node:crypto";
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
  for (const t of [on, off]) await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: 2 });
  const warmupRows = await settledRows(on, 1, 10_000);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, t] of [
      ["on", on],
      ["off", off],
    ]) {
      const w = await wrk({ url: t.url, headers: t.headers, body, connections: CONNECTIONS, seconds: SECONDS });
      if (name === "on") completedOn += w.requests;
      if (!best[name] || w.rps > best[name].rps) best[name] = w;
    }
  }
  const rowsOn = (await settledRows(on, warmupRows + completedOn)) - warmupRows;
  const ratio = best.on.rps / best.off.rps;

  // 3.
  const proxy = await startTcpProxy("127.0.0.1", 5432);
  cleanups.push(() => proxy.close());
  const outage = await replicaWith({}, (url) => viaProxy(url, proxy));
  await wrk({ url: outage.url, headers: outage.headers, body, connections: 4, seconds: 1 });
  const before = await settledRows(outage, 1, 10_000);
  const total = OUTAGE_SECONDS + 10;
  const load = wrk({ url: outage.url, headers: outage.headers, body, connections: 8, seconds: total });
  await sleep(5_000);
  proxy.setMode("reject");
  proxy.cutAll();
  await sleep(OUTAGE_SECONDS * 1000);
  proxy.setMode("pass");
  const w = await load;
  const outageRows = (await settledRows(outage, before + w.requests)) - before;

  const table = [
    { what: "saturation, spend logs on (req/s)", value: Math.round(best.on.rps), target: "" },
    { what: "saturation, spend logs off (req/s)", value: Math.round(best.off.rps), target: "" },
    { what: "on / off", value: ratio.toFixed(3), target: "≥ 0.95" },
    { what: `requests completed with logs on (${ROUNDS} runs of ${SECONDS} s)`, value: completedOn, target: "" },
    { what: "rows written for them", value: rowsOn, target: "= requests" },
    { what: `requests completed across a ${OUTAGE_SECONDS} s Postgres outage (${total} s of load)`, value: w.requests, target: "" },
    { what: "rows written for them once Postgres returned", value: outageRows, target: "= requests (0 lost)" },
    { what: "non-2xx answers during the outage run", value: w.non2xx, target: "" },
  ];
  const text = printTable(`Spend logs (wrk, ${CONNECTIONS} connections, best of ${ROUNDS} interleaved rounds; load generator, upstream and replicas share 2 cores)`, table);
  writeResult("spend-logs", { rows: table, ratio, completed_on: completedOn, rows_on: rowsOn, outage_requests: w.requests, outage_rows: outageRows, markdown: text });
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  upstream.child.kill("SIGKILL");
}
