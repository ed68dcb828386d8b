import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import type { Settings } from "./config/settings.js";
import type { Logger } from "./logger.js";
import { Authenticator } from "./auth/authenticator.js";
import { L1Cache } from "./auth/l1-cache.js";
import { L2Cache, l2MacKey } from "./auth/l2-cache.js";
import { MasterKey } from "./auth/master-key.js";
import { CacheInvalidator } from "./coherence/cache-invalidator.js";
import { Coherence } from "./coherence/coherence.js";
import { DbClock } from "./coherence/db-clock.js";
import { L2Guard } from "./coherence/l2-guard.js";
import { TokenFilterKeeper } from "./coherence/token-filter-keeper.js";
import { reinstatedBugs } from "./testing/reinstated-bugs.js";
import { DependencyBreaker, POSTGRES_BREAKER_OPTIONS, REDIS_BREAKER_OPTIONS } from "./faults/breaker.js";
import { buildHttp } from "./http/app.js";
import { IdempotencyVault } from "./keys/idempotency-vault.js";
import { KeyService } from "./keys/key-service.js";
import { RotationService } from "./keys/rotation-service.js";
import { LimitEnforcer } from "./limits/limit-enforcer.js";
import { LocalLimiter } from "./limits/local-limiter.js";
import { RedisLimiter } from "./limits/redis-limiter.js";
import { ReplicaCount } from "./limits/replica-count.js";
import { SpendLedger } from "./limits/spend-ledger.js";
import { readDurableSpend } from "./store/spend-store.js";
import { Metrics } from "./metrics/metrics.js";
import { ModelRouter } from "./proxy/model-router.js";
import { MockProvider } from "./proxy/providers/mock.js";
import { OpenAICompatibleProvider } from "./proxy/providers/openai-compatible.js";
import { createRedis, type GatehouseRedis } from "./redis/client.js";
import { RedisKeys } from "./redis/key-names.js";
import { RotationLock } from "./redis/rotation-lock.js";
import { Database } from "./store/database.js";
import { createPool, ensureDatabaseExists } from "./store/db.js";
import { migrateDirect } from "./store/migrator.js";
import { startEmbeddedPostgres } from "./store/embedded-postgres.js";
import { PrefetchExpiry } from "./upkeep/prefetch-expiry.js";
import { ReplicaCensus } from "./upkeep/replica-census.js";
import { SpendFlush } from "./upkeep/spend-flush.js";
import { Sweeper } from "./upkeep/sweeper.js";
import { packageVersion } from "./paths.js";
import type { Express } from "express";

/**
 * Wires one replica together: Postgres (pool, breaker, migrations), Redis (client, breaker), the auth
 * caches, coherence, the admin services, the providers and the HTTP server. Nothing here runs per request.
 */
export interface Gateway {
  url: string;
  port: number;
  settings: Settings;
  pool: pg.Pool;
  db: Database;
  /** Null for the embedded single replica (no Redis). */
  redis: GatehouseRedis | null;
  l1: L1Cache;
  l2: L2Cache;
  tokenFilter: TokenFilterKeeper;
  authenticator: Authenticator;
  coherence: Coherence;
  sweeper: Sweeper;
  metrics: Metrics;
  /** The express app (routes are listed from it by test/openapi.test.ts). */
  app: Express;
  limits: LimitEnforcer;
  spendLedger: SpendLedger;
  breakers: { postgres: DependencyBreaker; redis: DependencyBreaker };
  close(): Promise<void>;
}

export interface StartOptions {
  settings: Settings;
  masterKey: string;
  logger: Logger;
  host?: string;
}

export async function startGateway(options: StartOptions): Promise<Gateway> {
  // What a start that fails half-way has opened, closed in reverse, so the process can exit (a replica that
  // fails to listen must not linger with its pools and timers open, where no supervisor sees it fail).
  const undo: Array<() => unknown> = [];
  try {
    return await build(options, undo);
  } catch (err) {
    for (const step of undo.reverse()) await Promise.resolve().then(step).catch(() => {});
    throw err;
  }
}

async function build({ settings: configured, masterKey, logger, host = "0.0.0.0" }: StartOptions, undo: Array<() => unknown>): Promise<Gateway> {
  if (reinstatedBugs().length > 0) logger.warn({ bugs: reinstatedBugs() }, "TEST BUILD: known coherence bugs reinstated on purpose (GATEHOUSE_TEST_REINSTATE_BUGS); never run this in production");
  // No DATABASE_URL: one replica on an embedded Postgres, reached through a loopback socket.
  const embedded = configured.embedded ? await startEmbeddedPostgres(configured.dataDir, logger) : null;
  undo.push(() => embedded?.close());
  const settings: Settings = embedded ? { ...configured, databaseUrl: embedded.url, databaseListenUrl: embedded.url } : configured;
  // Migrations hold a session-level advisory lock and run DDL: they go over the direct connection
  // (DATABASE_LISTEN_URL), never through a transaction pooler, which would split the session.
  if (await ensureDatabaseExists(settings.databaseListenUrl)) logger.info("created the database named in DATABASE_URL");
  logger.info("checking database migrations");
  const applied = await migrateDirect(settings.databaseListenUrl);
  if (applied.length > 0) logger.info({ migrations: applied }, "applied migrations");
  // PGlite is a single backend: one connection, used in turn.
  const pool = createPool(settings.databaseUrl, { max: embedded ? 1 : 20 });
  undo.push(() => pool.end());
  if (embedded) {
    logger.info(
      { data_dir: embedded.dataDir },
      "single replica on the embedded database (PGlite) with in-process caches, locks and counters; to scale out, set DATABASE_URL and REDIS_URL to a shared Postgres and Redis on every replica, or run `docker compose up` (README)",
    );
  }
  const breakers = {
    postgres: new DependencyBreaker("postgres", logger, POSTGRES_BREAKER_OPTIONS),
    redis: new DependencyBreaker("redis", logger, REDIS_BREAKER_OPTIONS),
  };
  undo.push(() => {
    breakers.postgres.shutdown();
    breakers.redis.shutdown();
  });
  const db = new Database(pool, breakers.postgres);
  // Sources are read at scrape time only; declared first so every part can report from its start.
  const metrics: Metrics = new Metrics({
    authLevels: () => {
      const c = authenticator.counters;
      return { l1: c.l1, l2: c.l2, db: c.db, "l1-static": c.static, miss: c.misses, filtered: c.filtered, unavailable: c.unavailable };
    },
    eventsReplayed: () => coherence.counters.replayed,
    notifications: () => coherence.counters.notifications,
    listenerUp: () => coherence.listenerState === "listening",
    breakerStates: () => ({ postgres: breakers.postgres.state, redis: breakers.redis.state }),
    spendCharged: () => spendLedger.counters.charged,
    limitRejections: () => limits.rejections,
    l2Forged: () => l2.counters.forged,
    l1Drops: () => coherence.counters.l1Drops,
    catchUpFailures: () => coherence.counters.catchUpFailures,
    settleFailures: () => limits.counters.settleFailures,
    unknownKeysFiltered: () => authenticator.counters.filtered,
    limitAdmissions: () => {
      const prefetched = limits.prefetch?.counters.used ?? 0;
      return { redis: limits.counters.admittedRedis - prefetched, prefetched, local: limits.counters.admittedLocal };
    },
  });

  // Redis is an optimisation and a lock service with a fallback: a replica starts without it and
  // connects when it can (ioredis keeps retrying). The embedded single replica has none at all.
  const redis = settings.redisUrl ? createRedis(settings.redisUrl) : null;
  undo.push(() => redis?.disconnect());
  await redis?.connect().catch((err: Error) => logger.warn({ err: err.message }, "Redis is unreachable at start; running without L2 until it answers"));

  const redisKeys = new RedisKeys(settings.redisPrefix);
  const l1 = new L1Cache({ maxEntries: settings.auth.l1MaxEntries, ttlMs: settings.auth.l1TtlMs, negativeTtlMs: settings.auth.negativeTtlMs });
  // An L2 record never outlives the events that could invalidate it: the L2 repair replays the event table,
  // which is complete only for records younger than the event retention (coherence/l2-guard.ts).
  const l2TtlSeconds = Math.min(settings.auth.l2TtlSeconds, Math.floor(settings.coherence.eventRetentionMs / 1000));
  const l2 = new L2Cache(
    redis,
    redisKeys,
    l2TtlSeconds,
    (op, err) => logger.warn({ op, err: (err as Error).message }, "L2 cache operation failed; continuing without it"),
    breakers.redis,
    l2MacKey(masterKey),
    () => logger.warn("an L2 record failed its authentication check and was ignored: something other than this gateway (or a gateway with another master key) writes to this Redis prefix; counted in gatehouse_l2_forged_records_total"),
  );
  const tokenFilter = new TokenFilterKeeper({ db, logger, rebuildIntervalMs: settings.auth.tokenFilterRebuildMs, falsePositiveRate: 0.001 });
  const invalidator = new CacheInvalidator(l1, l2, tokenFilter);
  const clock = new DbClock();
  const l2Guard: L2Guard = new L2Guard({
    redis,
    keys: redisKeys,
    db,
    logger,
    tombstone: (tokens, version) => l2.invalidate(tokens, version),
    startEventId: () => coherence.firstEventId,
  });
  l2.trusted = () => l2Guard.trusted;
  const coherence: Coherence = new Coherence({
    db,
    listenUrl: embedded ? null : settings.databaseListenUrl,
    invalidator,
    logger,
    replicaId: settings.replicaId,
    heartbeatIntervalMs: settings.coherence.heartbeatIntervalMs,
    staleAfterMs: settings.coherence.staleAfterMs,
    onLag: (ms: number) => metrics.invalidationLag(ms),
    clock,
    onTombstoneFailed: (eventId) => l2Guard.tombstoneFailed(eventId),
    onHeartbeat: () => void l2Guard.check(),
    l2Status: () => l2Guard.status(),
  });
  logger.info("catching up on key events");
  await coherence.start();
  undo.push(() => coherence.stop());
  void l2Guard.check(); // L2 is not read until it has passed; the replica does not wait for Redis to start
  const authenticator = new Authenticator(l1, l2, db, {
    l1Trusted: () => coherence.isFresh(),
    l2Pending: (hash) => invalidator.l2Pending(hash),
    now: () => clock.now(),
    tokenFilter: () => (settings.auth.tokenFilterRebuildMs > 0 ? tokenFilter.current : null),
  });
  if (settings.auth.tokenFilterRebuildMs > 0) tokenFilter.start();
  undo.push(() => tokenFilter.stop());

  const models = new ModelRouter(settings.models);
  const servedModels = () => models.modelNames();
  const vault = new IdempotencyVault(masterKey);
  const replicas = new ReplicaCount(settings.limits.replicaCount);
  const replicaCensus = new ReplicaCensus(db, logger, replicas);
  replicaCensus.start();
  undo.push(() => replicaCensus.stop());
  const spendLedger = new SpendLedger({
    db,
    logger,
    replicaId: settings.replicaId,
    onResetSeen: (reset) => {
      for (const r of reset) void limits.afterReset(r.keyId, r.generation);
    },
  });
  const spendFlush = new SpendFlush(spendLedger, logger, settings.limits.flushIntervalMs);
  spendFlush.start();
  undo.push(() => spendFlush.stop());
  const limits = new LimitEnforcer({
    settings: settings.limits,
    redis: redis && new RedisLimiter(redis, redisKeys, { read: (keyId) => db.query((q) => readDurableSpend(q, keyId)) }, settings.limits.reservationTtlMs, breakers.redis),
    local: new LocalLimiter(settings.limits.reservationTtlMs),
    ledger: spendLedger,
    db,
    logger,
    replicaCount: () => replicas.value,
  });
  undo.push(() => limits.close());
  const prefetchExpiry = new PrefetchExpiry(limits.prefetch, logger);
  prefetchExpiry.start();
  undo.push(() => prefetchExpiry.stop());
  const keys = new KeyService(db, coherence, servedModels, vault, limits);
  const rotation = new RotationService(db, coherence, new RotationLock(redis, redisKeys, logger, breakers.redis), vault, servedModels, settings.rotation);
  const sweeper = new Sweeper({
    db,
    events: coherence,
    logger,
    intervalMs: settings.upkeep.sweepIntervalMs,
    idempotencyRetentionMs: settings.upkeep.idempotencyRetentionMs,
    eventRetentionMs: settings.coherence.eventRetentionMs,
    onBudgetReset: (keyId, generation) => limits.afterReset(keyId, generation),
  });
  sweeper.start();
  undo.push(() => sweeper.stop());

  const openai = new OpenAICompatibleProvider(settings.upstream);
  undo.push(() => openai.close());
  let shuttingDown = false;
  const http = buildHttp({
    logger,
    authenticator,
    masterKey: new MasterKey(masterKey),
    keys,
    rotation,
    coherence,
    models,
    providers: { openai, mock: new MockProvider() },
    limits,
    defaultMaxTokens: settings.limits.defaultMaxTokens,
    metrics,
    metricsToken: settings.metricsToken,
    health: {
      probes: [
        { name: "db", check: async () => void (await pool.query("SELECT 1")) },
        ...(redis ? [{ name: "redis", check: async () => void (await redis.ping()) }] : []),
      ],
      isShuttingDown: () => shuttingDown,
      detail: () => ({
        breakers: { postgres: breakers.postgres.state, redis: breakers.redis.state },
        listener: coherence.listenerState,
        caches_fresh: coherence.isFresh(),
        l2_trusted: redis ? l2Guard.trusted : null,
      }),
    },
    maxRequestBodyBytes: settings.maxRequestBodyBytes,
    masterKeyOnProxy: settings.server.masterKeyOnProxy,
    version: packageVersion,
  });

  // Slow-loris defences (docs/security.md): headers and the whole request must arrive in time; a response,
  // streamed or not, is never cut by these (Node's own defaults are 60 s and 300 s, checked every 30 s).
  const server: Server = createServer(
    {
      headersTimeout: settings.server.headersTimeoutMs,
      requestTimeout: settings.server.requestTimeoutMs,
      keepAliveTimeout: settings.server.keepAliveTimeoutMs,
      // How often Node looks for requests past those timeouts: this is their precision.
      connectionsCheckingInterval: 1_000,
    },
    http.listener,
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(settings.port, host, () => {
      server.removeListener("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    settings,
    pool,
    db,
    redis,
    l1,
    l2,
    tokenFilter,
    authenticator,
    coherence,
    sweeper,
    metrics,
    app: http.app,
    limits,
    spendLedger,
    breakers,
    /**
     * Graceful shutdown: readiness turns 503 first; after `shutdown.delay_ms` (time for the
     * load balancer to notice) the server stops accepting and in-flight requests, streams included, drain
     * for up to `shutdown.drain_timeout_ms`; then background loops, pools and the listener close.
     */
    async close() {
      shuttingDown = true;
      if (settings.shutdown.delayMs > 0) await new Promise((r) => setTimeout(r, settings.shutdown.delayMs));
      await drain(server, settings.shutdown.drainTimeoutMs, logger);
      await sweeper.stop();
      await tokenFilter.stop();
      await replicaCensus.stop();
      await prefetchExpiry.stop();
      // Requests are drained: what they charged goes to the durable ledger before the pool closes.
      await limits.close();
      await spendFlush.stop();
      await coherence.stop();
      await openai.close();
      breakers.postgres.shutdown();
      breakers.redis.shutdown();
      redis?.disconnect();
      await pool.end();
      await embedded?.close();
    },
  };
}

/** Stops accepting, lets in-flight requests finish (idle keep-alive connections are closed as they go idle). */
async function drain(server: Server, timeoutMs: number, logger: Logger): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const sweep = setInterval(() => server.closeIdleConnections(), 50);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), timeoutMs);
  });
  const expired = await Promise.race([closed.then(() => false), timedOut]);
  clearInterval(sweep);
  clearTimeout(timer);
  if (expired) {
    logger.warn({ drain_timeout_ms: timeoutMs }, "drain timeout reached; closing the remaining connections");
    server.closeAllConnections();
    await closed;
  }
}
