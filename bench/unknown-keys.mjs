// Floods of unknown keys (docs/security.md): how many database transactions 1,000 requests with random,
// never-issued keys cost a replica, with the token filter and without it, and what a flood does to a valid
// key's latency. Transactions are counted from pg_stat_database, minus the replica's own background
// transactions (heartbeats, the L2 guard) measured over the same length of time while idle.
import pg from "pg";
import { Pool } from "undici";
import { openLoop } from "./lib/load.mjs";
import { createDatabase, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } from "./lib/harness.mjs";

const UNKNOWN = Number(process.env.BENCH_UNKNOWN_KEYS ?? 1000);
const FLOOD_SECONDS = Number(process.env.BENCH_FLOOD_SECONDS ?? 5);
const VALID_RATE = Number(process.env.BENCH_VALID_RATE ?? 200);
// The same flood for both scenarios, so the valid key's latencies compare (a cheaper refusal would otherwise
// just let the flood go faster and take the CPU back).
const FLOOD_RATE = Number(process.env.BENCH_FLOOD_RATE ?? 2000);
const MASTER = "sk-bench-master-key";
const progress = (line) => process.stderr.write(`[unknown-keys] ${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const body = JSON.stringify({ model: "mock-gpt", messages: [{ role: "user", content: "hi" }] });
const randomKey = () => `sk-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;

const db = await createDatabase();
const ns = redisNamespace();
const admin = new pg.Pool({ connectionString: db.url, max: 1 });
const transactions = async () => {
  // A backend reports its counts to pg_stat_database at most once a second while busy, and within 10 s once
  // idle (PGSTAT_IDLE_INTERVAL): wait that long, or a burst is under-counted.
  await sleep(11_000);
  const { rows } = await admin.query("SELECT (xact_commit + xact_rollback)::int8 AS n FROM pg_stat_database WHERE datname = current_database()");
  return Number(rows[0].n);
};

async function scenario(name, extraEnv) {
  const replica = await startReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: MASTER, ...extraEnv });
  // As many connections as requests may wait (512): a refused key waits for a catch-up, and a pool of a few
  // connections would queue the flood in this process instead of sending it.
  const pool = new Pool(replica.url, { connections: 600 });
  const call = async (key) => {
    const res = await pool.request({ path: "/v1/chat/completions", method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body });
    await res.body.dump();
    return res.statusCode;
  };
  try {
    const gen = await fetch(`${replica.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${MASTER}`, "content-type": "application/json" }, body: "{}" });
    const valid = (await gen.json()).key;
    await sleep(2_000); // the filter is built off the request path at start

    // Idle baseline over the same time the flood will take.
    const t0 = await transactions();
    const idleStart = Date.now();
    await sleep(2_000);
    const t1 = await transactions();
    const idleRatePerMs = (t1 - t0) / (Date.now() - idleStart);

    const floodStart = Date.now();
    const before = await transactions();
    const started = Date.now();
    // Open loop at the flood's rate (at most 512 waiting): a refusal waits for this replica to catch up on the
    // events committed before it (docs/security.md), so clients that each wait for their answer would measure
    // how many of them there are, not what a flood costs.
    let not401 = 0;
    await new Promise((resolve) => {
      let sentKeys = 0;
      const inFlight = new Set();
      const timer = setInterval(() => {
        for (let i = 0; i < FLOOD_RATE / 100 && sentKeys < UNKNOWN && inFlight.size < 512; i++, sentKeys++) {
          const p = call(randomKey())
            .then((status) => {
              if (status !== 401) not401++;
            })
            .finally(() => {
              inFlight.delete(p);
              if (sentKeys >= UNKNOWN && inFlight.size === 0) {
                clearInterval(timer);
                resolve();
              }
            });
          inFlight.add(p);
        }
      }, 10);
    });
    const floodMs = Date.now() - started;
    const after = await transactions();
    const background = idleRatePerMs * (Date.now() - floodStart);
    const perThousand = Math.max(0, after - before - background) * (1000 / UNKNOWN);
    progress(`${name}: ${after - before} transactions during ${UNKNOWN} unknown keys (${floodMs} ms), ~${background.toFixed(1)} of them background`);

    // A valid key's latency, alone and while unknown keys arrive at the flood's rate (at most 512 waiting).
    const quiet = await openLoop({
      url: replica.url,
      path: "/v1/chat/completions",
      headers: { authorization: `Bearer ${valid}`, "content-type": "application/json" },
      body,
      rate: VALID_RATE,
      durationMs: FLOOD_SECONDS * 1000,
    });
    let floodRequests = 0;
    const pending = new Set();
    const floodTimer = setInterval(() => {
      for (let i = 0; i < FLOOD_RATE / 100; i++) {
        if (pending.size > 512) break;
        const p = call(randomKey())
          .catch(() => 0)
          .finally(() => pending.delete(p));
        pending.add(p);
        floodRequests++;
      }
    }, 10);
    const loaded = await openLoop({
      url: replica.url,
      path: "/v1/chat/completions",
      headers: { authorization: `Bearer ${valid}`, "content-type": "application/json" },
      body,
      rate: VALID_RATE,
      durationMs: FLOOD_SECONDS * 1000,
    });
    clearInterval(floodTimer);
    await Promise.all(pending);
    const floodRate = Math.round(floodRequests / (FLOOD_SECONDS + 1));
    return {
      scenario: name,
      "DB transactions per 1,000 unknown keys": perThousand.toFixed(1),
      "unknown keys not 401": not401,
      "valid key p50 / p99 alone (ms)": `${(quiet.p50Us / 1000).toFixed(2)} / ${(quiet.p99Us / 1000).toFixed(2)}`,
      "valid key p50 / p99 under the flood (ms)": `${(loaded.p50Us / 1000).toFixed(2)} / ${(loaded.p99Us / 1000).toFixed(2)}`,
      "flood sent (unknown keys/s)": floodRate,
    };
  } finally {
    await pool.close();
    await replica.stop();
  }
}

try {
  const rows = [await scenario("token filter on (default)", {}), await scenario("token filter off", { GATEHOUSE_AUTH_TOKEN_FILTER_REBUILD_MS: "0" })];
  const table = printTable(
    `Unknown keys: ${UNKNOWN} random keys; a valid key at ${VALID_RATE} req/s for ${FLOOD_SECONDS} s, alone and under a flood of ${FLOOD_RATE} unknown keys/s (target ≤ 10 transactions per 1,000)`,
    rows,
  );
  writeResult("unknown-keys", { rows, markdown: table });
} finally {
  await admin.end();
  await db.drop();
  await ns.cleanup();
}
