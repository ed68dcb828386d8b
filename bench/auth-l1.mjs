// Cost of an L1-hit authentication (sha256 of the bearer + LRU get + clock checks), measured in-process
// on the real Authenticator, with the key loaded from a real Postgres first.
import { randomBytes } from "node:crypto";
import { Authenticator } from "../dist/auth/authenticator.js";
import { L1Cache } from "../dist/auth/l1-cache.js";
import { L2Cache } from "../dist/auth/l2-cache.js";
import { hashKey } from "../dist/auth/key-material.js";
import { insertKey } from "../dist/store/key-store.js";
import { createPool } from "../dist/store/db.js";
import { Database } from "../dist/store/database.js";
import { DependencyBreaker } from "../dist/faults/breaker.js";
import { createLogger } from "../dist/logger.js";
import { migrate } from "../dist/store/migrator.js";
import { createRedis } from "../dist/redis/client.js";
import { RedisKeys } from "../dist/redis/key-names.js";
import { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, writeResult } from "./lib/harness.mjs";

const KEYS = Number(process.env.BENCH_KEYS ?? 1000);
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 500_000);

const db = await createDatabase();
const ns = redisNamespace();
const pool = createPool(db.url);
const redis = createRedis(REDIS_URL);
try {
  await migrate(pool);
  await redis.connect();
  const plaintexts = Array.from({ length: KEYS }, () => `sk-${randomBytes(24).toString("base64url")}`);
  for (const key of plaintexts) await insertKey(pool, { token: hashKey(key), key_name: `sk-...${key.slice(-4)}` });

  const l1 = new L1Cache({ maxEntries: 100_000, ttlMs: 600_000, negativeTtlMs: 2_000 });
  const db = new Database(pool, new DependencyBreaker("postgres", createLogger({ level: "silent" })));
  const auth = new Authenticator(l1, new L2Cache(redis, new RedisKeys(ns.prefix), 3600, () => {}), db);
  for (const key of plaintexts) await auth.authenticate(key); // warm L1

  // Warm up the JIT, then time batches (a single call is below timer resolution).
  for (let i = 0; i < 50_000; i++) await auth.authenticate(plaintexts[i % KEYS]);
  const BATCH = 1000;
  const perCallUs = [];
  const started = process.hrtime.bigint();
  for (let done = 0; done < ITERATIONS; done += BATCH) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) {
      const r = await auth.authenticate(plaintexts[(done + i) % KEYS]);
      if (r.level !== "l1") throw new Error("expected an L1 hit");
    }
    perCallUs.push(Number(process.hrtime.bigint() - t0) / 1000 / BATCH);
  }
  const totalS = Number(process.hrtime.bigint() - started) / 1e9;
  perCallUs.sort((a, b) => a - b);
  const row = {
    what: "L1-hit authenticate()",
    keys: KEYS,
    calls: ITERATIONS,
    "mean µs": ((totalS * 1e6) / ITERATIONS).toFixed(2),
    "p50 µs (batch mean)": percentile(perCallUs, 50).toFixed(2),
    "p99 µs (batch mean)": percentile(perCallUs, 99).toFixed(2),
    "target µs": 20,
  };
  printTable("Auth: L1 hit", [row]);
  writeResult("auth-l1", { rows: [row] });
} finally {
  redis.disconnect();
  await pool.end();
  await db.drop();
  await ns.cleanup();
}
