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
import { KeyService, type KeyChange, type KeyChangeSink } from "./keys/key-service.js";
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
  const authenticator = new Authenticator(l1, l2, pool);

  // Until cross-replica events exist, a change evicts this replica's L1 and writes an L2 tombstone.
  const changes: KeyChangeSink = {
    async committed(change: KeyChange) {
      for (const { token, version } of change.tokens) {
        l1.invalidate(token);
        await l2.invalidate(token, version);
      }
    },
  };

  const models = new ModelRouter(settings.models);
  const keys = new KeyService(pool, changes, () => models.modelNames());
  const openai = new OpenAICompatibleProvider(settings.upstream);
  let shuttingDown = false;
  const app = buildApp({
    logger,
    authenticator,
    masterKey: new MasterKey(masterKey),
    keys,
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
    async close() {
      shuttingDown = true;
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
