// `gatehouse start --workers N`: LISTEN connections per host, and commit → applied on every worker, compared
// with the same number of separate single-process replicas. Each worker is addressed through a keep-alive
// connection of its own (a connection stays on the worker that accepted it); lags come from each worker's
// /debug/coherence (applied-at minus the event row's clock_timestamp(), both this machine's clock).
import pg from "pg";
import { Client } from "undici";
import { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";

const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 1000);
const MASTER = "sk-bench-master-key";
const progress = (msg) => process.stderr.write(`[workers] ${msg}\n`);

const db = await createDatabase();
const ns = redisNamespace();
const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: MASTER };
const pool = new pg.Pool({ connectionString: db.url, max: 2 });
const started = [];

async function call(client, method, path, body) {
  const res = await client.request({
    method,
    path,
    headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, body: await res.body.json() };
}

/** One keep-alive connection per worker of the gateway at `url`. */
async function pinWorkers(url, count) {
  const byPid = new Map();
  const spare = [];
  for (let i = 0; i < 50 && byPid.size < count; i++) {
    const client = new Client(url, { pipelining: 1 });
    const { body } = await call(client, "GET", "/health/readiness");
    const pid = body.worker?.pid ?? i;
    if (byPid.has(pid)) spare.push(client);
    else byPid.set(pid, { client, name: `worker ${body.worker?.index ?? i}` });
  }
  await Promise.all(spare.map((c) => c.close()));
  if (byPid.size < count) throw new Error(`reached ${byPid.size} of ${count} workers`);
  return [...byPid.values()];
}

const listenConnections = async () =>
  (await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'gatehouse-listen:%'")).rows[0].n;

/** Makes CHANGES key updates through `writers` in turn, then reads every member's lag for them. */
async function propagation(members, writers) {
  const keys = [];
  for (let i = 0; i < 50; i++) keys.push((await call(writers[0].client, "POST", "/key/generate", {})).body.key);
  const last = async (m) => (await call(m.client, "GET", "/debug/coherence")).body.last_applied_event_id;
  const before = Math.max(...(await Promise.all(members.map(last))));
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < CHANGES) {
        const i = next++;
        const res = await call(writers[i % writers.length].client, "POST", "/key/update", { key: keys[i % keys.length], metadata: { i } });
        if (res.status !== 200) throw new Error(`update failed: ${res.status}`);
      }
    }),
  );
  const after = Math.max(...(await Promise.all(members.map(last))));
  const lags = {};
  for (const m of members) {
    const deadline = Date.now() + 10_000;
    while ((await last(m)) < after) {
      if (Date.now() > deadline) throw new Error(`${m.name} did not catch up`);
      await new Promise((r) => setTimeout(r, 50));
    }
    lags[m.name] = (await call(m.client, "GET", `/debug/coherence?after_event_id=${before}`)).body.applied.filter((a) => a.id <= after).map((a) => a.lagMs);
  }
  return lags;
}

const stats = (what, listens, lags) => {
  const s = [...lags].sort((a, b) => a - b);
  return { what, "LISTEN connections": listens, events: s.length, "p50 ms": percentile(s, 50).toFixed(1), "p99 ms": percentile(s, 99).toFixed(1), "max ms": s.at(-1).toFixed(1) };
};

const rows = [];
try {
  progress(`--workers ${WORKERS}`);
  const clustered = await startReplica({ ...env, GATEHOUSE_SERVER_WORKERS: String(WORKERS) });
  started.push(clustered);
  const workers = await pinWorkers(clustered.url, WORKERS);
  const listens = await listenConnections();
  const lags = await propagation(workers, workers);
  for (const [name, l] of Object.entries(lags)) rows.push(stats(`--workers ${WORKERS}: ${name}`, "", l));
  rows.push(stats(`--workers ${WORKERS}: every worker`, listens, Object.values(lags).flat()));
  await Promise.all(workers.map((w) => w.client.close()));
  await clustered.stop();
  started.pop();

  progress(`${WORKERS} separate replicas`);
  const separate = [];
  for (let i = 0; i < WORKERS; i++) {
    const r = await startReplica({ ...env, GATEHOUSE_REPLICA_ID: `R${i}` });
    started.push(r);
    separate.push({ client: new Client(r.url, { pipelining: 1 }), name: `replica ${i}` });
  }
  const separateListens = await listenConnections();
  const separateLags = await propagation(separate, separate);
  rows.push(stats(`${WORKERS} separate replicas: every replica`, separateListens, Object.values(separateLags).flat()));
  await Promise.all(separate.map((s) => s.client.close()));

  const table = printTable(`Commit → applied, ${CHANGES} key updates made through every member in turn (4 at a time)`, rows);
  writeResult("workers", { workers: WORKERS, changes: CHANGES, rows, markdown: table });
} finally {
  await Promise.all(started.map((r) => r.stop()));
  await pool.end();
  await db.drop();
  await ns.cleanup();
}
