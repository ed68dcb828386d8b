// Scale-out: 1, 2 and 3 replicas behind nginx as the load balancer, all with L1-hit keys, to show the
// throughput curve and whether anything shared (Postgres, Redis, NOTIFY) is touched per request.
import autocannon from "autocannon";
import pg from "pg";
import { Redis } from "ioredis";
import { benchGround, printTable, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";
import { startNginx } from "./lib/nginx.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);

const ground = await benchGround();
const { db, config, master, env } = ground;
const replicas = [];
const pgStats = new pg.Client({ connectionString: db.url });
await pgStats.connect();
const redisStats = new Redis(REDIS_URL);
const counters = async () => {
  const x = (await pgStats.query("SELECT xact_commit::int8 AS n FROM pg_stat_database WHERE datname = current_database()")).rows[0].n;
  const info = await redisStats.info("stats");
  return { pg: Number(x), redis: Number(/total_commands_processed:(\d+)/.exec(info)[1]) };
};
try {
  const rows = [];
  let key;
  for (const n of [1, 2, 3]) {
    while (replicas.length < n) replicas.push(await startReplica({ ...env, GATEHOUSE_REPLICA_ID: `R${replicas.length + 1}` }, ["--config", config]));
    if (!key)
      key = (
        await (
          await fetch(`${replicas[0].url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
        ).json()
      ).key;
    const lb = await startNginx(replicas.map((r) => `127.0.0.1:${r.port}`));
    if (!lb) throw new Error("scale-out needs nginx as the load balancer (apt-get install nginx-light)");
    const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello" }] });
    const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
    // Warm every replica's L1.
    await new Promise((res, rej) => autocannon({ url: `${lb.url}/v1/chat/completions`, method: "POST", headers, body, connections: 8, amount: 200 }, (e) => (e ? rej(e) : res())));
    const before = await counters();
    const r = await new Promise((res, rej) =>
      autocannon({ url: `${lb.url}/v1/chat/completions`, method: "POST", headers, body, connections: CONNECTIONS, duration: SECONDS }, (e, out) => (e ? rej(e) : res(out))),
    );
    const after = await counters();
    const total = r.requests.total;
    rows.push({
      replicas: n,
      "req/s": Math.round(r.requests.average),
      "p50 ms": r.latency.p50,
      "p99 ms": r.latency.p99,
      errors: r.errors + r.non2xx,
      "Postgres commits / request": ((after.pg - before.pg) / total).toFixed(4),
      "Redis commands / request": ((after.redis - before.redis) / total).toFixed(4),
    });
    await lb.stop();
  }
  const text = printTable(`Scale-out behind nginx (1 worker), ${CONNECTIONS} connections, ${SECONDS} s; all processes share 2 cores`, rows);
  writeResult("scale-out", { rows, markdown: text });
} finally {
  await Promise.all(replicas.map((r) => r.stop()));
  await pgStats.end();
  redisStats.disconnect();
  await ground.cleanup();
}
