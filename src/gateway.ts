import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import type { Settings } from "./config/settings.js";
import type { Logger } from "./logger.js";
import { Authenticator } from "./auth/authenticator.js";
import { L1Cache } from "./auth/l1-cache.js";
import { L2Cache } from "./auth/l2-cache.js";
import { MasterKey } from "./auth/master-key.js";
import { buildApp } from "./http/app.js";
import { CacheInvalidator } from "./auth/cache-invalidator.js";
import { Coherence } from "./coherence/coherence.js";
import { IdempotencyVault } from "./keys/idempotency.js";
import { KeyService } from "./keys/key-service.js";
import { RotationService } from "./keys/rotation-service.js";
import { RotationLock } from "./redis/rotation-lock.js";
import { Sweeper } from "./upkeep/sweeper.js";
import { ModelRouter } from "./proxy/model-router.js";
import { MockProvider } from "./proxy/providers/mock.js";
import { OpenAICompatibleProvider } from "./proxy/providers/openai-compatible.js";
import { createRedis, type GatehouseRedis } from "./redis/client.js";
import { RedisKeys } from "./redis/key-names.js";
import { createPool, ensureDatabaseExists } from "./store/db.js";
import { migrate } from "./store/migrator.js";

/**
 * Wires one replica together: Postgres pool and migrations, Redis, the auth caches, the admin service,
 * the providers and the HTTP server. Request-path objects are built here; nothing here runs per request.
 */
export interface Gateway {
  url: string;
  port: number;
  settings: Settings;
  pool: pg.Pool;
  redis: GatehouseRedis;
  l1: L1Cache;
  coherence: Coherence;
  sweeper: Sweeper;
  close(): Promise<void>;
}

export interface StartOptions {
  settings: Settings;
  masterKey: string;
  logger: Logger;
  host?: string;
}

export async function startGateway({ settings, masterKey, logger, host = "0.0.0.0" }: StartOptions): Promise<Gateway> {
  if (await ensureDatabaseExists(settings.databaseUrl)) logger.info("created the database named in DATABASE_URL");
  const pool = createPool(settings.databaseUrl, { max: 20 });
  const applied = await migrate(pool);
  if (applied.length > 0) logger.info({ migrations: applied }, "applied migrations");

  const redis = createRedis(settings.redisUrl);
  await redis.connect();

  const redisKeys = new RedisKeys(settings.redisPrefix);
  const l1 = new L1Cache({ maxEntries: settings.auth.l1MaxEntries, ttlMs: settings.auth.l1TtlMs, negativeTtlMs: settings.auth.negativeTtlMs });
  const l2 = new L2Cache(redis, redisKeys, settings.auth.l2TtlSeconds, (op, err) => logger.warn({ op, err: (err as Error).message }, "L2 cache operation failed; continuing without it"));
  const invalidator = new CacheInvalidator(l1, l2);
  const coherence = new Coherence({
    pool,
    listenUrl: settings.databaseListenUrl,
    invalidator,
    logger,
    replicaId: settings.replicaId,
    heartbeatIntervalMs: settings.coherence.heartbeatIntervalMs,
    staleAfterMs: settings.coherence.staleAfterMs,
  });
  await coherence.start();
  const authenticator = new Authenticator(l1, l2, pool, () => coherence.isFresh(), (hash) => invalidator.l2Pending(hash));

  const models = new ModelRouter(settings.models);
  const servedModels = () => models.modelNames();
  const vault = new IdempotencyVault(masterKey);
  const keys = new KeyService(pool, coherence, servedModels, vault);
  const rotation = new RotationService(pool, coherence, new RotationLock(redis, redisKeys, logger), vault, servedModels, settings.rotation);
  const sweeper = new Sweeper({
    pool,
    events: coherence,
    logger,
    intervalMs: settings.upkeep.sweepIntervalMs,
    idempotencyRetentionMs: settings.upkeep.idempotencyRetentionMs,
    eventRetentionMs: settings.coherence.eventRetentionMs,
  });
  sweeper.start();
  const openai = new OpenAICompatibleProvider(settings.upstream);
  let shuttingDown = false;
  const app = buildApp({
    logger,
    authenticator,
    masterKey: new MasterKey(masterKey),
    keys,
    rotation,
    coherence,
    models,
    providers: { openai, mock: new MockProvider() },
    probes: [
      { name: "db", check: async () => void (await pool.query("SELECT 1")) },
      { name: "redis", check: async () => void (await redis.ping()) },
    ],
    maxRequestBodyBytes: settings.maxRequestBodyBytes,
    isShuttingDown: () => shuttingDown,
  });

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(settings.port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  // Longer than any load balancer's idle timeout, so the balancer closes idle connections, not us.
  server.keepAliveTimeout = 65_000;
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    settings,
    pool,
    redis,
    l1,
    coherence,
    sweeper,
    async close() {
      shuttingDown = true;
      await sweeper.stop();
      await coherence.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await openai.close();
      redis.disconnect();
      await pool.end();
    },
  };
}
