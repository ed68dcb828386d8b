import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import type { ProviderName, Settings } from "./config/settings.js";
import { repeatedWarning, type Logger } from "./logger.js";
import { Listeners, type Subscribable } from "./listeners.js";
import { Authenticator } from "./auth/authenticator.js";
import { L1Cache } from "./auth/l1-cache.js";
import { L2Cache, l2MacKey } from "./auth/l2-cache.js";
import { MasterKey } from "./auth/master-key.js";
import { CacheInvalidator } from "./coherence/cache-invalidator.js";
import { Coherence } from "./coherence/coherence.js";
import { DbClock, monotonicMs } from "./coherence/db-clock.js";
import { UnknownTokenCheck } from "./auth/unknown-token-check.js";
import { L2Guard } from "./coherence/l2-guard.js";
import { TokenFilterKeeper } from "./coherence/token-filter-keeper.js";
import { reinstatedBugs } from "./testing/reinstated-bugs.js";
import { DependencyBreaker, POSTGRES_BREAKER_OPTIONS, REDIS_BREAKER_OPTIONS } from "./faults/breaker.js";
import { buildHttp } from "./http/app.js";
import { IdempotencyVault } from "./keys/idempotency-vault.js";
import { KeyService } from "./keys/key-service.js";
import { KeyStandings } from "./keys/key-standing.js";
import { RotationService } from "./keys/rotation-service.js";
import { TeamService } from "./teams/team-service.js";
import { UserService } from "./users/user-service.js";
import { LimitEnforcer } from "./limits/limit-enforcer.js";
import { LocalLimiter } from "./limits/local-limiter.js";
import { RedisLimiter } from "./limits/redis-limiter.js";
import { ReplicaCount } from "./limits/replica-count.js";
import { SoftBudgetAlerts } from "./limits/soft-budget-alerts.js";
import { SpendLedger } from "./limits/spend-ledger.js";
import { readDurableSpend } from "./store/spend-store.js";
import { SpendJournal } from "./spendlogs/spend-journal.js";
import { SpendLogReader } from "./spendlogs/spend-log-reader.js";
import { SpendTotals } from "./spendlogs/spend-totals.js";
import { SpendLogWriter } from "./spendlogs/spend-log-writer.js";
import { SpendLogUpkeep } from "./upkeep/spend-log-upkeep.js";
import { ReplicaHeartbeat, readCluster } from "./upkeep/replica-heartbeat.js";
import { UiSessions } from "./auth/ui-sessions.js";
import { LoginThrottle } from "./auth/login-throttle.js";
import { ClientAddress } from "./http/client-address.js";
import { Metrics, type MetricSources } from "./metrics/metrics.js";
import { CredentialSeal } from "./models/credential-seal.js";
import { MODELS_CACHE_KEY, ModelRegistry } from "./models/model-registry.js";
import { ModelService } from "./models/model-service.js";
import type { Provider } from "./proxy/provider.js";
import { DeploymentLoad } from "./proxy/deployment-load.js";
import { HealthProber } from "./proxy/health-prober.js";
import { routingStrategy, type RoutingStrategy } from "./proxy/routing-strategy.js";
import { DeploymentHealth } from "./proxy/deployment-health.js";
import { AnthropicProvider } from "./proxy/providers/anthropic.js";
import { AzureProvider } from "./proxy/providers/azure.js";
import { HttpUpstream } from "./proxy/providers/http-upstream.js";
import { MockProvider } from "./proxy/providers/mock.js";
import { OpenAICompatibleProvider } from "./proxy/providers/openai-compatible.js";
import { connectRedis, createRedis, type GatehouseRedis } from "./redis/client.js";
import { RedisKeys } from "./redis/key-names.js";
import { RedisServerIdentity } from "./redis/server-identity.js";
import { RotationLock } from "./redis/rotation-lock.js";
import { Database } from "./store/database.js";
import { createPool, ensureDatabaseExists, pingDatabase } from "./store/db.js";
import { migrateDirect } from "./store/migrator.js";
import { startEmbeddedPostgres } from "./store/embedded-postgres.js";
import { PrefetchExpiry } from "./upkeep/prefetch-expiry.js";
import { ReplicaCensus } from "./upkeep/replica-census.js";
import { SpendFlush } from "./upkeep/spend-flush.js";
import { Sweeper } from "./upkeep/sweeper.js";
import { packageVersion } from "./paths.js";
import type { Express } from "express";
import type { WorkerLink } from "./workers.js";

/** One replica, started: what tests and the CLI reach into. */
export interface Gateway {
  url: string;
  port: number;
  settings: Settings;
  pool: pg.Pool;
  db: Database;
  /** Null for the embedded single replica (no Redis). */
  redis: GatehouseRedis | null;
  /** Names of this replica's Redis keys, in the namespace of the database history it follows. */
  redisKeys: RedisKeys;
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
  /**
   * Graceful shutdown: readiness turns 503 first; after `shutdown.delay_ms` (time for the load balancer to
   * notice) the server stops accepting and in-flight requests, streams included, drain for up to
   * `shutdown.drain_timeout_ms`; then everything started is closed, in the reverse order of its start.
   */
  close(): Promise<void>;
}

export interface StartOptions {
  settings: Settings;
  masterKey: string;
  logger: Logger;
  host?: string;
  /** Set when this process is one of several workers (workers.ts): host-wide metrics and the workers' count. */
  worker?: WorkerLink | undefined;
}

/**
 * Wires one replica together, in phases: stores → coherence → services → background work → listen. Each phase
 * pushes what it started onto one stack; close() (or a start that fails half-way) closes the stack in reverse,
 * so start-up and shutdown read as two lists and a replica that fails to start leaves nothing open.
 * Nothing here runs per request.
 */
export async function startGateway(options: StartOptions): Promise<Gateway> {
  const { logger } = options;
  const started = new StartedStack();
  try {
    if (reinstatedBugs().length > 0)
      logger.warn({ bugs: reinstatedBugs() }, "TEST BUILD: known coherence bugs reinstated on purpose (GATEHOUSE_TEST_REINSTATE_BUGS); never run this in production");
    const stores = await openStores(options, started);
    const caches = await startCoherence(options, stores, started);
    const services = await buildServices(options, stores, caches, started);
    const background = await startBackgroundWork(options, stores, caches, services, started);
    const metrics = new Metrics();
    metrics.readFrom(metricSources(stores, caches, services));
    return await listen(options, stores, caches, services, background, metrics, started);
  } catch (err) {
    await started.closeAll().catch(() => {}); // the start's own failure is what the caller must hear
    throw err;
  }
}

/** What has been started, closed last-first. A step that fails to close does not stop the others. */
class StartedStack {
  private readonly steps: Array<{ name: string; close: () => unknown }> = [];

  push(name: string, close: () => unknown): void {
    this.steps.push({ name, close });
  }

  /** Closes everything; rejects at the end, naming what failed to close, if anything did. */
  async closeAll(): Promise<void> {
    const failed: string[] = [];
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) {
      try {
        await step.close();
      } catch (err) {
        failed.push(`${step.name}: ${(err as Error)?.message ?? String(err)}`);
      }
    }
    if (failed.length > 0) throw new Error(`failed to close ${failed.join("; ")}`);
  }
}

// ── phase 1: stores ─────────────────────────────────────────────────────────────────────────────────────

interface Stores {
  settings: Settings;
  embedded: boolean;
  pool: pg.Pool;
  db: Database;
  breakers: { postgres: DependencyBreaker; redis: DependencyBreaker };
  redis: GatehouseRedis | null;
  redisKeys: RedisKeys;
}

/** Postgres (embedded or not, migrated, pooled, behind its breaker) and Redis (connecting, behind its breaker). */
async function openStores({ settings: configured, logger }: StartOptions, started: StartedStack): Promise<Stores> {
  // No DATABASE_URL: one replica on an embedded Postgres, reached through a loopback socket.
  const embedded = configured.embedded ? await startEmbeddedPostgres(configured.dataDir, logger) : null;
  if (embedded) started.push("embedded database", () => embedded.close());
  const settings: Settings = embedded ? { ...configured, databaseUrl: embedded.url, databaseListenUrl: embedded.url } : configured;
  // Migrations hold a session-level advisory lock and run DDL: they go over the direct connection
  // (DATABASE_LISTEN_URL), never through a transaction pooler, which would split the session.
  if (await ensureDatabaseExists(settings.databaseListenUrl)) logger.info("created the database named in DATABASE_URL");
  logger.info("checking database migrations");
  const applied = await migrateDirect(settings.databaseListenUrl);
  if (applied.length > 0) logger.info({ migrations: applied }, "applied migrations");
  // PGlite is a single backend: one connection, used in turn.
  const pool = createPool(settings.databaseUrl, {
    max: embedded ? 1 : 20,
    statementTimeoutMs: settings.postgres.statementTimeoutMs,
    connectTimeoutMs: settings.postgres.connectTimeoutMs,
  });
  started.push("database pool", () => pool.end());
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
  started.push("breakers", () => {
    breakers.postgres.shutdown();
    breakers.redis.shutdown();
  });
  // Redis is an optimisation and a lock service with a fallback: a replica starts without it and
  // connects when it can (ioredis keeps retrying). The embedded single replica has none at all.
  // REDIS_SENTINELS: the master the Sentinels name, followed across failovers (REDIS_URL gives its password and db).
  const redis = settings.redisUrl ? createRedis(settings.redisUrl, settings.redisSentinel) : null;
  if (redis) started.push("redis", () => redis.disconnect());
  await (redis && connectRedis(redis))?.catch((err: Error) => logger.warn({ err: err.message }, "Redis is unreachable at start; running without L2 until it answers"));
  return { settings, embedded: embedded !== null, pool, db: new Database(pool, breakers.postgres), breakers, redis, redisKeys: new RedisKeys(settings.redisPrefix) };
}

// ── phase 2: coherence ──────────────────────────────────────────────────────────────────────────────────

interface Caches {
  l1: L1Cache;
  l2: L2Cache;
  l2Guard: L2Guard;
  tokenFilter: TokenFilterKeeper;
  coherence: Coherence;
  authenticator: Authenticator;
  /** Invalidation lags (ms), each as an event is applied; the metrics subscribe when they are made (after this phase). */
  lag: Subscribable<[ms: number]>;
  invalidator: CacheInvalidator;
  /** Every coherence heartbeat: work later phases add to it (the model registry retries a failed read there). */
  heartbeat: Subscribable<[]>;
  /** The database is another history: later phases drop what they keep of the old one (the limits' local state). */
  lineageChanged: Subscribable<[]>;
}

/** The auth caches and what keeps them coherent: caught up on the event table before the replica serves. */
async function startCoherence({ logger, masterKey }: StartOptions, { settings, db, redis, redisKeys, breakers, embedded }: Stores, started: StartedStack): Promise<Caches> {
  const l1 = new L1Cache({ maxEntries: settings.auth.l1MaxEntries, ttlMs: settings.auth.l1TtlMs, negativeTtlMs: settings.auth.negativeTtlMs });
  // An L2 record never outlives the events that could invalidate it: the L2 repair replays the event table,
  // which is complete only for records younger than the event retention (coherence/l2-guard.ts).
  const l2TtlSeconds = Math.min(settings.auth.l2TtlSeconds, Math.floor(settings.coherence.eventRetentionMs / 1000));
  const l2Failure = repeatedWarning(logger);
  const l2: L2Cache = new L2Cache(
    redis,
    redisKeys,
    l2TtlSeconds,
    (op, err) => l2Failure(op, { op, err: (err as Error).message }, "L2 cache operation failed; continuing without it"),
    breakers.redis,
    l2MacKey(masterKey),
    () =>
      logger.warn(
        "an L2 record failed its authentication check and was ignored: something other than this gateway (or a gateway with another master key) writes to this Redis prefix; counted in gatehouse_l2_forged_records_total",
      ),
    // The guard (made below, before anything reads L2) decides whether L2 may be read.
    (): boolean => l2Guard.trusted,
  );
  const tokenFilter = new TokenFilterKeeper({ db, logger, rebuildIntervalMs: settings.auth.tokenFilterRebuildMs, falsePositiveRate: 0.001 });
  const invalidator = new CacheInvalidator(l1, l2, tokenFilter, logger);
  const clock = new DbClock();
  const lag = new Listeners<[ms: number]>("invalidation lag", logger);
  const heartbeat = new Listeners<[]>("the coherence heartbeat", logger);
  const lineageChanged = new Listeners<[]>("a new database history", logger);
  // The check of unknown tokens hears of applied tokens, catch-ups and new histories; it asks coherence for a
  // catch-up only when a token waits, which the authenticator (made after coherence) is the first to make.
  const unknownTokens = new UnknownTokenCheck({ requestCatchUp: () => coherence.requestCatchUp(), now: monotonicMs, maxWaitMs: settings.coherence.staleAfterMs });
  tokenFilter.noted.subscribe((tokens) => unknownTokens.noted(tokens));
  // The guard and coherence refer to each other (the guard replays from coherence's first event id; coherence
  // reports failed tombstones to the guard): the guard reads coherence through closures, called once it exists.
  const l2Guard: L2Guard = new L2Guard({
    redis,
    keys: redisKeys,
    db,
    logger,
    tombstones: (events) => l2.repair(events),
    startEventId: (): number => coherence.firstEventId,
    lineage: (): string | null => coherence.currentLineage,
  });
  const coherence: Coherence = new Coherence({
    db,
    listenUrl: embedded ? null : settings.databaseListenUrl,
    invalidator,
    logger,
    replicaId: settings.replicaId,
    heartbeatIntervalMs: settings.coherence.heartbeatIntervalMs,
    staleAfterMs: settings.coherence.staleAfterMs,
    onLag: (ms: number) => lag.emit(ms),
    clock,
    onTombstoneFailed: (eventId) => l2Guard.tombstoneFailed(eventId),
    onHeartbeat: () => {
      void l2Guard.check();
      heartbeat.emit();
    },
    l2Status: () => l2Guard.status(),
    moreStatus: () => ({ unknown_tokens: unknownTokens.counters }),
    onCaughtUp: (startedAt) => unknownTokens.caughtUp(startedAt),
    onLineage: (current, previous) => {
      // Before anything reads Redis: L2, its cursor and the ledgers are named by the history they belong to.
      redisKeys.useLineage(current);
      if (previous === null) return;
      l2Guard.lineageChanged();
      tokenFilter.forget();
      unknownTokens.lookUpAll();
      lineageChanged.emit();
    },
  });
  logger.info("catching up on key events");
  await coherence.start();
  started.push("coherence", () => coherence.stop());
  void l2Guard.check(); // L2 is not read until it has passed; the replica does not wait for Redis to start
  const authenticator = new Authenticator(l1, l2, db, {
    l1Trusted: () => coherence.isFresh(),
    l2Pending: (hash) => invalidator.l2Pending(hash),
    now: () => clock.now(),
    tokenFilter: () => (settings.auth.tokenFilterRebuildMs > 0 ? tokenFilter.current : null),
    unknownTokens,
  });
  return { l1, l2, l2Guard, tokenFilter, coherence, authenticator, lag, invalidator, heartbeat, lineageChanged };
}

// ── phase 3: services ───────────────────────────────────────────────────────────────────────────────────

interface Services {
  models: ModelRegistry;
  modelAdmin: ModelService;
  replicas: ReplicaCount;
  spendLedger: SpendLedger;
  softBudgetAlerts: SoftBudgetAlerts;
  limits: LimitEnforcer;
  keys: KeyService;
  teams: TeamService;
  users: UserService;
  rotation: RotationService;
  providers: Record<ProviderName, Provider>;
  /** Which deployments cool down, shared by the cluster (docs/routing.md). */
  health: DeploymentHealth;
  /** Deployments' load and latency, and the routing strategy that reads them. */
  load: DeploymentLoad;
  strategy: RoutingStrategy;
  prober: HealthProber;
  /** Null when spend_logs.logging is off. */
  spendLogs: SpendLogWriter | null;
  spendReader: SpendLogReader;
  spendTotals: SpendTotals;
}

/** What the routes call: models and providers, limits and spend, the /key operations. */
async function buildServices(
  { masterKey, logger }: StartOptions,
  { settings, embedded, db, redis, redisKeys, breakers }: Stores,
  { coherence, invalidator, heartbeat, lineageChanged, authenticator }: Caches,
  started: StartedStack,
): Promise<Services> {
  // Database models: read before the replica serves, dropped and read again on each model event.
  const seal = new CredentialSeal(settings.credentials.saltKey ?? masterKey, settings.credentials.previousSaltKey);
  const models = new ModelRegistry(settings.models, db, seal, logger, settings.providerBases, () => coherence.isFresh());
  // Listening first, reading second: a model event applied while the first read runs makes it read again.
  invalidator.changed.subscribe((changed) => {
    if (changed === "all" || changed.includes(MODELS_CACHE_KEY)) models.invalidate();
  });
  heartbeat.subscribe(() => models.retry());
  await models.load();
  const modelAdmin = new ModelService(db, coherence, models, seal);
  const servedModels = () => models.modelNames();
  const vault = new IdempotencyVault(masterKey);
  const replicas = new ReplicaCount(settings.limits.replicaCount);
  // The ledger learns of budget resets from Postgres; the enforcer (made next) must forget its counters then.
  const resets = new Listeners<[ledger: string, generation: string]>("budget resets", logger);
  const softBudgetAlerts = new SoftBudgetAlerts({
    logger,
    webhookUrl: settings.alerting.webhookUrl,
    webhookSecret: settings.webhookSecret,
    attempts: settings.alerting.webhookAttempts,
  });
  // Closed after the last spend flush (which may cross a soft budget): the stack closes in reverse.
  started.push("soft budget alerts", () => softBudgetAlerts.close());
  const spendLedger = new SpendLedger({
    db,
    logger,
    replicaId: settings.replicaId,
    onResetSeen: (reset) => {
      for (const r of reset) resets.emit(r.ledger, r.generation);
    },
    onSoftBudgetCrossed: (crossings) => softBudgetAlerts.crossed(crossings),
  });
  const limits = new LimitEnforcer({
    settings: settings.limits,
    redis:
      redis &&
      new RedisLimiter(
        redis,
        redisKeys,
        {
          read: async (level) => {
            const durable = await db.query((q) => readDurableSpend(q, level));
            return { spend: durable.spend + spendLedger.unflushedSpend(level.ledger, durable.generation), generation: durable.generation };
          },
        },
        settings.limits.reservationTtlMs,
        breakers.redis,
        new RedisServerIdentity(redis),
      ),
    local: new LocalLimiter(settings.limits.reservationTtlMs),
    ledger: spendLedger,
    db,
    logger,
    replicaCount: () => replicas.value,
  });
  resets.subscribe((ledger, generation) => limits.afterReset(ledger, generation));
  lineageChanged.subscribe(() => limits.afterLineageChange());
  const keys = new KeyService(db, coherence, servedModels, vault, limits, new KeyStandings(authenticator, db, limits));
  const teams = new TeamService(db, coherence, servedModels, limits);
  const users = new UserService(db, coherence, servedModels, limits);
  const rotation = new RotationService(db, coherence, new RotationLock(redis, redisKeys, logger, breakers.redis), vault, servedModels, settings.rotation);
  // router_settings.timeout and stream_timeout, when set, stand in for the upstream read timeouts.
  const http = new HttpUpstream({
    ...settings.upstream,
    readTimeoutMs: settings.router.timeoutMs ?? settings.upstream.readTimeoutMs,
    streamReadTimeoutMs: settings.router.streamTimeoutMs,
  });
  started.push("upstream connections", () => http.close());
  const health = new DeploymentHealth({ redis, keys: redisKeys, logger, settings: settings.router });
  await health.start();
  started.push("deployment health", () => health.stop());
  const load = new DeploymentLoad({ redis, keys: redisKeys, logger });
  load.start();
  started.push("deployment load", () => load.stop());
  const strategy = routingStrategy(settings.router, load);
  const providers: Record<ProviderName, Provider> = {
    openai: new OpenAICompatibleProvider(http),
    azure: new AzureProvider(http),
    anthropic: new AnthropicProvider(http, settings.limits.defaultMaxTokens),
    mock: new MockProvider(),
  };
  const prober = new HealthProber({
    redis,
    keys: redisKeys,
    logger,
    replicaId: settings.replicaId,
    background: settings.router.healthChecks.enabled,
    intervalMs: settings.router.healthChecks.intervalMs,
    deployments: () => models.deployments(),
    providers,
    health,
  });
  prober.start();
  started.push("health checks", () => prober.stop());
  let spendLogs: SpendLogWriter | null = null;
  if (settings.spendLogs.logging === "on") {
    const journal = new SpendJournal(settings.dataDir);
    await journal.open();
    spendLogs = new SpendLogWriter({ db, journal, logger, batchRows: settings.spendLogs.batchRows, memoryMaxRows: settings.spendLogs.memoryMaxRows, copy: !embedded });
  }
  const spendReader = new SpendLogReader(db);
  const spendTotals = new SpendTotals(db);
  return {
    models,
    replicas,
    spendLedger,
    softBudgetAlerts,
    limits,
    keys,
    teams,
    users,
    modelAdmin,
    rotation,
    providers,
    health,
    load,
    strategy,
    prober,
    spendLogs,
    spendReader,
    spendTotals,
  };
}

// ── phase 4: background work ────────────────────────────────────────────────────────────────────────────

interface Background {
  sweeper: Sweeper;
}

/** The loops of upkeep/ and the token filter's rebuild: none runs on the request path. */
async function startBackgroundWork(
  { logger }: StartOptions,
  { settings, db }: Stores,
  { tokenFilter, coherence }: Caches,
  { replicas, spendLedger, limits, spendLogs }: Services,
  started: StartedStack,
): Promise<Background> {
  if (settings.auth.tokenFilterRebuildMs > 0) {
    tokenFilter.start();
    started.push("token filter", () => tokenFilter.stop());
  }
  const census = new ReplicaCensus(db, logger, replicas);
  census.start();
  started.push("replica census", () => census.stop());
  const spendFlush = new SpendFlush(spendLedger, logger, settings.limits.flushIntervalMs);
  spendFlush.start();
  started.push("spend flush", () => spendFlush.stop());
  if (spendLogs) {
    const spendLogUpkeep = new SpendLogUpkeep(spendLogs, db, logger, settings.spendLogs.flushIntervalMs, settings.spendLogs.retentionDays);
    await spendLogUpkeep.start();
    // Stopped after the requests drained (the stack closes last-first): their rows are written or journaled.
    started.push("spend logs", () => spendLogUpkeep.stop());
  }
  // Closed before the last flush (the stack closes last-first) and after the requests drained: what they
  // settled reaches the durable ledger in that flush.
  started.push("limits", () => limits.close());
  const prefetchExpiry = new PrefetchExpiry(limits.prefetch, logger);
  prefetchExpiry.start();
  started.push("prefetch expiry", () => prefetchExpiry.stop());
  const sweeper = new Sweeper({
    db,
    events: coherence,
    logger,
    intervalMs: settings.upkeep.sweepIntervalMs,
    idempotencyRetentionMs: settings.upkeep.idempotencyRetentionMs,
    eventRetentionMs: settings.coherence.eventRetentionMs,
    onBudgetReset: (ledger, generation) => limits.afterReset(ledger, generation),
  });
  sweeper.start();
  started.push("sweeper", () => sweeper.stop());
  return { sweeper };
}

function metricSources(
  { breakers, db }: Stores,
  { authenticator, coherence, l2 }: Caches,
  { spendLedger, softBudgetAlerts, limits, spendLogs, health, load }: Services,
): MetricSources {
  return {
    softBudgetAlerts: () => softBudgetAlerts.counters.alerts,
    postgresRecoveries: () => {
      const c = db.counters;
      return { retry: c.retries, conflict: c.conflicts, commit_verified: c.commitsVerified, commit_rerun: c.commitsRerun };
    },
    deploymentFailures: () => health.failureCounts(),
    deploymentsCooling: () => health.snapshot().map((c) => ({ deployment: c.id, secondsLeft: c.msLeft / 1000 })),
    routingShared: () => health.shared && load.shared,
    deploymentAttempts: () => load.attemptCounts(),
    deploymentLatency: () => load.latencies().map((l) => ({ deployment: l.id, seconds: l.ms / 1000 })),
    deploymentsInFlight: () => [...load.inFlightOnThisReplica()].map(([deployment, count]) => ({ deployment, count })),
    spendLogRows: (): Record<string, number> => {
      if (!spendLogs) return {};
      const c = spendLogs.counters;
      return { recorded: c.recorded, written: c.written, journaled: c.journaled, replayed: c.replayed, dropped: c.dropped };
    },
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
  };
}

// ── phase 5: listen ─────────────────────────────────────────────────────────────────────────────────────

async function listen(
  options: StartOptions,
  stores: Stores,
  caches: Caches,
  services: Services,
  background: Background,
  metrics: Metrics,
  started: StartedStack,
): Promise<Gateway> {
  const { logger, masterKey, host = "0.0.0.0", worker } = options;
  const { settings, pool, redis, breakers } = stores;
  caches.lag.subscribe((ms) => metrics.invalidationLag(ms));
  worker?.shareMetrics(metrics.registry);
  let shuttingDown = false;
  const healthDetail = () => ({
    // No Redis (the embedded single replica): no Redis breaker to report, rather than one forever "closed".
    breakers: redis ? { postgres: breakers.postgres.state, redis: breakers.redis.state } : { postgres: breakers.postgres.state },
    listener: caches.coherence.listenerState,
    caches_fresh: caches.coherence.isFresh(),
    l2_trusted: redis ? caches.l2Guard.trusted : null,
    // Cooldowns, failures, deployment load and limits: the cluster's (Redis), or this replica's own while Redis is unreachable.
    routing: redis === null ? "this replica (no Redis)" : services.health.shared && services.load.shared ? "shared" : "this replica (Redis unreachable)",
    ...(worker ? { worker: { index: worker.index, pid: process.pid }, workers: worker.workers } : {}),
  });
  const adminUi = settings.adminUi.mode === "on" ? await startAdminUi(options, stores, caches, healthDetail) : null;
  const http = buildHttp({
    logger,
    authenticator: caches.authenticator,
    masterKey: new MasterKey(masterKey),
    keys: services.keys,
    teams: services.teams,
    users: services.users,
    rotation: services.rotation,
    coherence: caches.coherence,
    models: services.models,
    modelAdmin: services.modelAdmin,
    providers: services.providers,
    routing: settings.router,
    deploymentHealth: services.health,
    deploymentLoad: services.load,
    routingStrategy: services.strategy,
    healthProber: services.prober,
    limits: services.limits,
    defaultMaxTokens: settings.limits.defaultMaxTokens,
    metrics,
    hostMetrics: worker ? () => worker.hostMetrics() : undefined,
    metricsToken: settings.metricsToken,
    health: {
      probes: [{ name: "db", check: () => pingDatabase(pool) }, ...(redis ? [{ name: "redis", check: async () => void (await redis.ping()) }] : [])],
      isShuttingDown: () => shuttingDown,
      detail: healthDetail,
    },
    maxRequestBodyBytes: settings.maxRequestBodyBytes,
    masterKeyOnProxy: settings.server.masterKeyOnProxy,
    straightPath: settings.server.straightPath,
    version: packageVersion,
    spendLogs: services.spendLogs,
    spendReader: services.spendReader,
    spendTotals: services.spendTotals,
    replicaId: settings.replicaId,
    adminUi: adminUi && {
      sessions: adminUi.sessions,
      sessionTtlMs: settings.adminUi.sessionTtlMs,
      cluster: adminUi.cluster,
      loginThrottle: adminUi.loginThrottle,
      clientAddress: adminUi.clientAddress,
    },
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
  started.push("http server", () => drain(server, settings.shutdown.drainTimeoutMs, logger));
  if (adminUi) {
    // Registered once it serves; removed first on the way down, so the cluster page never lists a replica
    // that no longer answers as if it were alive.
    adminUi.heartbeat.start();
    started.push("replica heartbeat", () => adminUi.heartbeat.stop());
  }
  const port = (server.address() as AddressInfo).port;
  worker?.listening(port);

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    settings,
    pool,
    db: stores.db,
    redis,
    redisKeys: stores.redisKeys,
    l1: caches.l1,
    l2: caches.l2,
    tokenFilter: caches.tokenFilter,
    authenticator: caches.authenticator,
    coherence: caches.coherence,
    sweeper: background.sweeper,
    metrics,
    app: http.app,
    limits: services.limits,
    spendLedger: services.spendLedger,
    breakers,
    async close() {
      shuttingDown = true;
      if (settings.shutdown.delayMs > 0) await new Promise((r) => setTimeout(r, settings.shutdown.delayMs));
      await started.closeAll();
    },
  };
}

/** The admin UI's sessions and this replica's heartbeat in the replica registry (docs/admin-ui.md). */
async function startAdminUi(
  { masterKey, logger }: StartOptions,
  { settings, db, redis, redisKeys, breakers }: Stores,
  { coherence }: Caches,
  healthDetail: () => Record<string, unknown>,
) {
  const sessions = new UiSessions(db, new MasterKey(masterKey), masterKey, settings.adminUi.sessionTtlMs);
  // A rotated master key ends the old sessions before this replica serves: on the replicas still on the old key
  // too (they read the same table). If Postgres cannot be asked now, this replica refuses them anyway.
  await sessions.endOtherMasterKeysSessions().catch((err) => logger.warn({ err: (err as Error).message }, "could not end the UI sessions of another master key"));
  const heartbeat = new ReplicaHeartbeat({
    db,
    logger,
    replicaId: settings.replicaId,
    version: packageVersion,
    intervalMs: settings.adminUi.heartbeatIntervalMs,
    status: () => {
      const status = coherence.status();
      const last = coherence.appliedSince(status.last_applied_event_id - 1).at(-1);
      return { ...status, ...healthDetail(), last_event_lag_ms: last && last.id === status.last_applied_event_id ? Math.round(last.lagMs * 10) / 10 : null };
    },
  });
  const loginThrottle = new LoginThrottle({
    redis,
    keys: redisKeys,
    breaker: breakers.redis,
    logger,
    maxFailures: settings.adminUi.loginMaxFailures,
    windowMs: settings.adminUi.loginFailureWindowMs,
  });
  const clientAddress = new ClientAddress(settings.adminUi.trustedProxies ?? []);
  return { sessions, heartbeat, loginThrottle, clientAddress, cluster: () => readCluster(db, settings.adminUi.heartbeatIntervalMs) };
}

/** Stops accepting, lets in-flight requests finish (idle keep-alive connections are closed as they go idle). */
async function drain(server: Server, timeoutMs: number, logger: Logger): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // Not a background loop (those run on timers/periodic.ts): a sweep that lives only while this shutdown drains,
  // closing each keep-alive connection as soon as its last request ends, cleared below either way.
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
