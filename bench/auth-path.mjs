// The auth path with 1,000,000 keys in Postgres: cold look-ups (L2 miss → Postgres → fills), L2 hits,
// L1 hits, each timed per call; and the memory one L1 entry costs. Runs itself with --expose-gc.
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

if (typeof global.gc !== "function") {
  const r = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url)], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const { Authenticator } = await import("../dist/auth/authenticator.js");
const { L1Cache } = await import("../dist/auth/l1-cache.js");
const { L2Cache, l2MacKey } = await import("../dist/auth/l2-cache.js");
const { DependencyBreaker, POSTGRES_BREAKER_OPTIONS } = await import("../dist/faults/breaker.js");
const { createLogger } = await import("../dist/logger.js");
const { createRedis } = await import("../dist/redis/client.js");
const { RedisKeys } = await import("../dist/redis/key-names.js");
const { Database } = await import("../dist/store/database.js");
const { createPool } = await import("../dist/store/db.js");
const { migrate } = await import("../dist/store/migrator.js");
const { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, writeResult } = await import("./lib/harness.mjs");

const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const SAMPLE = Number(process.env.BENCH_SAMPLE ?? 5_000);
const L1_ITERATIONS = 200_000;
const MEMORY_ENTRIES = 100_000;

const settleHeap = async () => {
  for (let i = 0; i < 3; i++) {
    global.gc();
    await new Promise((r) => setImmediate(r));
  }
};
// Memory: fresh records (their own strings, as if parsed from rows) in a fresh L1.
await settleHeap();
const before = process.memoryUsage().heapUsed;
const l1 = new L1Cache({ maxEntries: MEMORY_ENTRIES, ttlMs: 600_000, negativeTtlMs: 2_000 });
for (let i = 0; i < MEMORY_ENTRIES; i++) {
  const token = randomBytes(32).toString("hex");
  const ticket = l1.beginFill(token);
  l1.completeFill(ticket, {
    token,
    keyId: randomUUID(),
    keyName: `sk-...${token.slice(0, 4)}`,
    keyAlias: null,
    models: [],
    userId: null,
    teamId: null,
    expiresAt: null,
    blocked: false,
    maxBudget: null,
    tpmLimit: null,
    rpmLimit: null,
    maxParallelRequests: null,
    version: i,
    revokeAt: null,
  });
}
await settleHeap();
const perEntry = (process.memoryUsage().heapUsed - before) / MEMORY_ENTRIES;
// Keep the cache reachable until after the measurement, or the collector frees it first.
if (l1.size !== MEMORY_ENTRIES) throw new Error(`L1 holds ${l1.size} entries`);

const db = await createDatabase();
const ns = redisNamespace();
const pool = createPool(db.url, { max: 4, statementTimeoutMs: 600_000 });
const redis = createRedis(REDIS_URL);
const logger = createLogger({ level: "silent" });
try {
  await migrate(pool);
  await redis.connect();
  const salt = randomBytes(4).toString("hex");
  const t0 = Date.now();
  // Keys are generated in the database: sha256 of `sk-bench-<salt>-<i>`, the plaintext the bench presents.
  await pool.query(
    `INSERT INTO gh_keys (token, key_name, models)
     SELECT encode(sha256(convert_to('sk-bench-' || $1 || '-' || i, 'UTF8')), 'hex'), 'sk-...' || lpad((i % 10000)::text, 4, '0'), '{}'
     FROM generate_series(1, $2::int) AS i`,
    [salt, KEYS],
  );
  // A table just bulk-loaded gets vacuumed by autovacuum soon; measure the steady state, not that.
  await pool.query("VACUUM ANALYZE gh_keys");
  // ...and flush the bulk load's dirty pages now, not during the measurement.
  await pool.query("CHECKPOINT");
  const loadSeconds = ((Date.now() - t0) / 1000).toFixed(1);
  const { rows } = await pool.query("SELECT count(*)::int AS n, pg_size_pretty(pg_total_relation_size('gh_keys')) AS size FROM gh_keys");

  const database = new Database(pool, new DependencyBreaker("postgres", logger, POSTGRES_BREAKER_OPTIONS));
  const l2 = new L2Cache(redis, new RedisKeys(ns.prefix), 3600, () => {}, undefined, l2MacKey("bench-master-key"));
  const newAuth = () => new Authenticator(new L1Cache({ maxEntries: 1_000_000, ttlMs: 600_000, negativeTtlMs: 2_000 }), l2, database);
  const picked = new Set();
  while (picked.size < SAMPLE) picked.add(1 + Math.floor(Math.random() * KEYS));
  const sample = [...picked].map((i) => `sk-bench-${salt}-${i}`);

  const timeEach = async (auth, keys, level) => {
    const us = [];
    for (const k of keys) {
      const s = process.hrtime.bigint();
      const r = await auth.authenticate(k);
      us.push(Number(process.hrtime.bigint() - s) / 1000);
      if (r.level !== level) throw new Error(`expected ${level}, got ${r.level}`);
    }
    us.sort((a, b) => a - b);
    return { p50: percentile(us, 50), p99: percentile(us, 99), max: us.at(-1) };
  };

  const coldAuth = newAuth();
  const cold = await timeEach(coldAuth, sample, "db");
  const l2hit = await timeEach(newAuth(), sample, "l2");
  // L1: warm the JIT first, then time each call.
  for (let i = 0; i < 50_000; i++) await coldAuth.authenticate(sample[i % SAMPLE]);
  const l1keys = Array.from({ length: L1_ITERATIONS }, (_, i) => sample[i % SAMPLE]);
  const l1hit = await timeEach(coldAuth, l1keys, "l1");

  const f = (n) => n.toFixed(1);
  const table = [
    {
      what: `cold: L2 miss → Postgres (${rows[0].n.toLocaleString("en")} keys, ${rows[0].size}) → fills`,
      calls: SAMPLE,
      "p50 µs": f(cold.p50),
      "p99 µs": f(cold.p99),
      "max µs": f(cold.max),
      target: "p99 ≤ 3000 µs",
    },
    { what: "L2 hit (Redis)", calls: SAMPLE, "p50 µs": f(l2hit.p50), "p99 µs": f(l2hit.p99), "max µs": f(l2hit.max), target: "" },
    { what: "L1 hit (sha256 + LRU + clock checks)", calls: L1_ITERATIONS, "p50 µs": f(l1hit.p50), "p99 µs": f(l1hit.p99), "max µs": f(l1hit.max), target: "≤ 20 µs" },
    { what: "L1 memory per entry", calls: MEMORY_ENTRIES, "p50 µs": "", "p99 µs": "", "max µs": "", target: `${Math.round(perEntry)} bytes (target ≤ 1024)` },
  ];
  const text = printTable(`Auth path (keys loaded in ${loadSeconds} s)`, table);
  writeResult("auth-path", { keys: KEYS, sample: SAMPLE, rows: table, bytes_per_l1_entry: perEntry, markdown: text });
} finally {
  redis.disconnect();
  await pool.end();
  await db.drop();
  await ns.cleanup();
}
