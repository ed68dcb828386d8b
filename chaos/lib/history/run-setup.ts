import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import type { ConfigFile } from "../../../src/config/settings.js";
import { type Cluster, type Replica, startCluster } from "../../../test/helpers/cluster.js";
import { DEFAULT_TEST_CONFIG } from "../../../test/helpers/gateway-fixture.js";
import { pricedModel } from "../../../test/helpers/prices.js";
import { type RedisServer, startRedisServer } from "../../../test/helpers/redis-server.js";
import { type SentinelRedis, startSentinelRedis } from "../../../test/helpers/redis-sentinel.js";
import { waitFor } from "../../../test/helpers/services.js";
import { type PgPair, startPgPair } from "../../../test/support/pg-cluster.mjs";
import { startTcpProxy, type TcpProxy, viaProxy } from "../../../test/support/tcp-proxy.mjs";
import { DEFAULT_CHECKER_OPTIONS, type Switch } from "./checker.js";
import { CommitClock } from "./commit-clock.js";
import type { Fault } from "./faults.js";
import { type FaultWindow, History } from "./history.js";
import { PathCanary } from "./path-canary.js";
import type { Profile } from "./profiles.js";
import { RoutingUpstream, routingConfig } from "./routing.js";
import { ALERT_SECRET, AlertReceiver } from "./soft-budgets.js";

/**
 * A run's set-up and tear-down: its own Postgres (a primary and a standby when it fails over, else a database on the
 * shared server) and Redis (with a replica to promote, or a Sentinel-managed one), the fault-injecting proxies, the
 * three replica processes, the checker's own LISTEN connection and canary — and the state they share while the
 * clients (workload.ts) and the faults (faults.ts) run, as one RunContext.
 */
export interface RunContext {
  profile: Profile;
  log: (line: string) => void;
  /** Every request, fault window and replica start, as recorded. */
  history: History;
  /** The faults the run fires, in order (faultSchedule). */
  schedule: Fault[];
  control: RunControl;
  cluster: Cluster;
  /** The environment a replica (re)starts with: its own proxies. */
  replicaEnv(name: string): Record<string, string>;
  /** Replicas killed during the run: their log lines are kept with the others (HISTORY_REPLICA_LOGS). */
  killedReplicas: Replica[];
  postgres: PostgresState;
  redis: RedisState;
  proxies: Proxies;
  /** The checker's own LISTEN connection, straight to the primary: each change dated by its NOTIFY (commit-clock.ts). */
  clock: CommitClock;
  /** The checker's own Postgres proxies, watched (path-canary.ts). */
  canary: PathCanary;
  /** The routed models' upstream (routing.ts); null when the profile sends no routed requests. */
  routingUpstream: RoutingUpstream | null;
  /** The replicas' soft budget alerts, as received (soft-budgets.ts). */
  alerts: AlertReceiver;
  /**
   * Replicas the admin clients keep away from, as a load balancer drains a slow backend: a replica whose
   * answers from Postgres take seconds would hold the event-order lock for as long (docs/coherence.md).
   */
  adminAvoid: Set<string>;
  /** Replicas the slowing fault may pick. */
  slowable: string[];
  /** The window of the fault running now. */
  window: FaultWindow | null;
  /** How many times each fault kind fired. */
  faultsInjected: Record<string, number>;
}

export interface PostgresState {
  /** The run's own primary and standby when it fails over; null: a database on the shared server. */
  pair: PgPair | null;
  /** The primary now, straight (the checker's own connections never go through a fault proxy). */
  primaryUrl: string;
  /** A pool on the primary now, straight; replaced at each failover. */
  admin: pg.Pool;
  /** The primary's generation: 0, then one more at each promotion. */
  gen: number;
  /** The newest event id each generation's database held when it began (a promoted standby issues ids again). */
  forkIds: number[];
  /** When each promoted standby became the truth: the proxies moved to it. */
  switches: Switch[];
  /** Postgres failovers so far (every other clean one stops the primary, the others kill it). */
  failovers: number;
  /** After a failover the next standby is built while the run goes on; the next failover waits for it. */
  standbyReady: Promise<void>;
}

export interface RedisState {
  /** The server the replicas reach now (the Sentinels' master in the Sentinel segment). */
  server: RedisServer;
  /** The replica a Redis failover promotes, syncing through proxies.replication; null while the next one starts. */
  replica: RedisServer | null;
  replicaReady: Promise<void>;
  sentinel: SentinelRedis | null;
  /** A snapshot a few seconds old, for the "older snapshot" fault: changes made since then will be missing. */
  snapshot: { path: string; at: number } | null;
}

export interface Proxies {
  /** Each replica's pool connections to Postgres, by replica name. */
  pool: Map<string, TcpProxy>;
  /** Every replica's LISTEN connection. */
  listen: TcpProxy;
  /** Each replica's Redis connections, by replica name (none in the Sentinel segment). */
  redis: Map<string, TcpProxy>;
  /** The Redis replica's sync from its primary, which a Redis failover blackholes. */
  replication: TcpProxy;
}

export interface RunResources {
  /** The Sentinel segment's Redis, started ahead (its Sentinels take seconds to find each other). */
  sentinel?: Promise<SentinelRedis>;
}

/** When the run stops: at least the profile's duration and until every kind of fault in the schedule fired once, or at its count of requests, or when told. */
export class RunControl {
  readonly started = Date.now();
  readonly deadline: number;
  stopping = false;
  /**
   * Every kind of fault in the schedule fired once (a loaded machine makes faults slower; a run that never reached
   * some of them would prove nothing about them); until then the run goes on, up to twice its duration.
   */
  scheduleDone: boolean;

  constructor(
    private readonly profile: Profile,
    private readonly history: History,
    readonly setUpStarted: number,
    scheduled: number,
  ) {
    this.deadline = this.started + profile.durationMs;
    this.scheduleDone = scheduled === 0;
  }

  running(): boolean {
    const now = Date.now();
    return !this.stopping && this.history.ops.length < this.profile.maxOps && (now < this.deadline || (!this.scheduleDone && now < this.deadline + this.profile.durationMs));
  }
}

// A new Redis replica's first sync starts at once (Redis 7 waits 5 s for more replicas to share a diskless transfer).
export const FAST_REPLICATION = ["--repl-diskless-sync-delay", "0"];

export function alive(r: Replica): boolean {
  return r.child.exitCode === null && r.child.signalCode === null;
}

export const newAdminPool = (url: string) => {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on("error", () => {});
  return pool;
};

/** The run's gateway configuration: the mock models, and a priced one for budget keys (limits fail closed, so a 200 past a budget can only come from a ledger that forgot spend). */
function runConfig(routing: RoutingUpstream | null, alertsUrl: string): ConfigFile {
  const priced = pricedModel(DEFAULT_CHECKER_OPTIONS.pricedModel);
  const routed = routing ? routingConfig(routing.url, priced) : null;
  return {
    ...DEFAULT_TEST_CONFIG,
    model_list: [...(DEFAULT_TEST_CONFIG.model_list ?? []), priced, ...(routed?.model_list ?? [])],
    ...(routed ? { router_settings: routed.router_settings } : {}),
    gatehouse_settings: {
      limits: { flush_interval_ms: DEFAULT_CHECKER_OPTIONS.flushIntervalMs, prefetch: 0, redis_unavailable: "fail_closed" },
      alerting: { webhook_url: alertsUrl, webhook_secret: ALERT_SECRET },
    },
  };
}

/** Starts everything a run of `profile` firing `schedule` needs, up to the moment its clients and faults may begin. */
export async function setUpRun(profile: Profile, schedule: Fault[], log: (line: string) => void, resources: RunResources): Promise<RunContext> {
  const setUpStarted = Date.now();
  const history = new History();
  // What has started so far, stopped in reverse if a later step fails: a failed set-up leaves no process behind.
  const started: Array<() => unknown> = [];
  const startedAs = <T>(value: T, stop: (v: T) => unknown): T => {
    started.push(() => stop(value));
    return value;
  };
  try {
    // A Postgres of the run's own, primary and standby, when it fails over; else a database on the shared server.
    const pair: PgPair | null = profile.pgPair || schedule.some((f) => f.pgPair) ? startedAs(await startPgPair(), (p) => p.stop()) : null;
    let redisServer: RedisServer | null = null;
    let sentinel: SentinelRedis | null = null;
    if (profile.redis === "sentinel") sentinel = startedAs(await (resources.sentinel ?? startSentinelRedis()), (s) => s.stop());
    else redisServer = startedAs(await startRedisServer({ extraArgs: FAST_REPLICATION }), (r) => r.stop());
    // The replica a Redis failover promotes: it syncs through a proxy of its own, which the failover blackholes.
    const replication = startedAs(await startTcpProxy("127.0.0.1", redisServer?.port ?? 1), (p) => p.close());
    const redisReplica = schedule.some((f) => f.redisReplica)
      ? startedAs(await startRedisServer({ replicaOf: { host: "127.0.0.1", port: replication.port }, extraArgs: FAST_REPLICATION }), (r) => r.stop())
      : null;
    // The routing part's upstream, its flapping deployments dead or alive as it says.
    const routingUpstream = (profile.routingClients ?? 0) > 0 ? new RoutingUpstream() : null;
    if (routingUpstream) {
      await routingUpstream.start();
      startedAs(routingUpstream, (u) => u.close());
    }
    // Where the replicas' soft budget alerts go (soft-budgets.ts).
    const alerts = new AlertReceiver();
    const alertsUrl = await alerts.start();
    startedAs(alerts, (a) => a.close());
    const pgPort = pair?.primary.port ?? 5432;
    const listen = startedAs(await startTcpProxy("127.0.0.1", pgPort), (p) => p.close());
    const names = ["A", "B", "C"];
    const pool = new Map<string, TcpProxy>();
    const redis = new Map<string, TcpProxy>();
    for (const n of names) {
      pool.set(
        n,
        startedAs(await startTcpProxy("127.0.0.1", pgPort), (p) => p.close()),
      );
      if (redisServer)
        redis.set(
          n,
          startedAs(await startTcpProxy("127.0.0.1", redisServer.port), (p) => p.close()),
        );
    }
    const redisEnv = (name: string): Record<string, string> =>
      sentinel ? { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name } : { REDIS_URL: `redis://127.0.0.1:${redis.get(name)!.port}` };
    // Only the database name of this URL matters: every replica reaches Postgres through its proxies.
    const pgUrl = (url: string) => pair?.primary.url ?? url;
    const cluster = await startCluster({
      size: 1,
      config: runConfig(routingUpstream, alertsUrl),
      databaseUrl: (url) => viaProxy(pgUrl(url), pool.get("A")!),
      listenUrl: (url) => viaProxy(pgUrl(url), listen),
      env: { ...redisEnv("A"), ...profile.env },
      // Every replica's log lines are kept: the report quotes its errors (a 500's stack), and HISTORY_REPLICA_LOGS=<dir>
      // writes them all there at the end (a closer look).
      keepOutput: true,
    });
    startedAs(cluster, (c) => c.close());
    const replicaEnv = (name: string) => ({ DATABASE_URL: viaProxy(pgUrl(cluster.db.url), pool.get(name)!), ...redisEnv(name) });
    for (const n of names.slice(1)) await cluster.addReplica(n, replicaEnv(n));
    const primaryUrl = pgUrl(cluster.db.url);
    // Each change is dated by its NOTIFY's arrival on the checker's own LISTEN connection (commit-clock.ts).
    const clock = new CommitClock();
    startedAs(clock, (c) => c.close());
    await clock.follow(primaryUrl, 0);
    // The checker's own proxies slowed by a busy machine count as an impaired path to Postgres (path-canary.ts).
    const canary = new PathCanary(
      names.map((n) => ({ name: n, url: () => viaProxy(pgUrl(cluster.db.url), pool.get(n)!) })),
      (window) => history.faults.push(window),
    );
    return {
      profile,
      log,
      history,
      schedule,
      control: new RunControl(profile, history, setUpStarted, schedule.length),
      cluster,
      replicaEnv,
      killedReplicas: [],
      postgres: { pair, primaryUrl, admin: newAdminPool(primaryUrl), gen: 0, forkIds: [0], switches: [], failovers: 0, standbyReady: Promise.resolve() },
      redis: { server: redisServer ?? sentinel!.master, replica: redisReplica, replicaReady: Promise.resolve(), sentinel, snapshot: null },
      proxies: { pool, listen, redis, replication },
      clock,
      canary,
      routingUpstream,
      alerts,
      adminAvoid: new Set(),
      slowable: profile.slowable ?? names,
      window: null,
      faultsInjected: {},
    };
  } catch (err) {
    for (const stop of started.reverse())
      await Promise.resolve()
        .then(stop)
        .catch(() => {});
    throw err;
  }
}
/** Every replica has applied every event committed so far (cluster.settle() asks the shared server). */
export async function settle(ctx: RunContext): Promise<void> {
  const { rows } = await ctx.postgres.admin.query<{ id: number }>("SELECT COALESCE(max(id), 0)::int AS id FROM gh_key_events");
  await Promise.all(
    ctx.cluster.replicas.map((r) =>
      waitFor(async () => (await r.admin("/debug/coherence")).body.last_applied_event_id >= rows[0]!.id, { timeoutMs: 5_000, what: `${r.name} to catch up` }),
    ),
  );
}

/** The flapping deployment's id, as answers name it ("" without the routing part). */
export async function flappyDeploymentId(ctx: RunContext): Promise<string> {
  if (!ctx.routingUpstream) return "";
  const { deployments } = (await ctx.cluster.replicas[0]!.admin("/debug/routing")).body as { deployments: Array<{ id: string; deployment: string }> };
  return deployments.find((d) => d.deployment === "openai/flappy")!.id;
}

/** The proxies the checker's faults act on between the replicas and the stores. */
export const storeProxies = (ctx: RunContext) => [...ctx.proxies.pool.values(), ctx.proxies.listen, ...ctx.proxies.redis.values()];

/** Stops everything setUpRun started, in this order; a step that fails is logged and the next one runs. */
export async function tearDown(ctx: RunContext): Promise<void> {
  const { postgres, redis, proxies } = ctx;
  const steps: Array<() => Promise<unknown>> = [
    async () => postgres.admin.end(),
    async () => ctx.clock.close(),
    async () => {
      const dir = process.env.HISTORY_REPLICA_LOGS;
      if (dir) {
        mkdirSync(dir, { recursive: true });
        for (const [i, r] of [...ctx.killedReplicas, ...ctx.cluster.replicas].entries())
          writeFileSync(path.join(dir, `${ctx.profile.name}-${r.name}-${i}.log`), r.output.join("\n"));
      }
      await ctx.cluster.close();
    },
    async () => {
      await postgres.standbyReady;
      await postgres.pair?.stop();
    },
    async () => (redis.sentinel ? redis.sentinel.stop() : redis.server.stop()),
    async () => proxies.replication.close(),
    async () => {
      await redis.replicaReady;
      await redis.replica?.stop();
    },
    async () => ctx.routingUpstream?.close(),
    // After the replicas: their last flushes may still tell.
    async () => ctx.alerts.close(),
    async () => {
      for (const p of storeProxies(ctx)) await p.close();
    },
    async () => ctx.canary.stop(),
  ];
  for (const step of steps) await step().catch((err: Error) => ctx.log(`cleanup: ${err.message}`));
}
