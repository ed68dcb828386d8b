import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import type { ConfigFile } from "../../../src/config/settings.js";
import { startCluster, type Cluster, type Replica } from "../../../test/helpers/cluster.js";
import { DEFAULT_TEST_CONFIG } from "../../../test/helpers/gateway-fixture.js";
import { chatBody } from "../../../test/helpers/http.js";
import { costOf, pricedModel } from "../../../test/helpers/prices.js";
import { startRedisServer, type RedisServer } from "../../../test/helpers/redis-server.js";
import { waitFor } from "../../../test/helpers/services.js";
import { startPgPair, type PgPair } from "../../../test/support/pg-cluster.mjs";
import { startTcpProxy, viaProxy, type TcpProxy } from "../../../test/support/tcp-proxy.mjs";
import { PathCanary } from "./path-canary.js";
import { checkRouting, ROUTING, type RoutedOp, RoutingUpstream, type RoutingSummary, routingConfig } from "./routing.js";
import { checkHistory, commitTime, DEFAULT_CHECKER_OPTIONS, type CheckResult, type Switch, type Violation } from "./checker.js";
import { CHECKER_APPLICATION_NAME, CommitClock } from "./commit-clock.js";
import { checkerNow, History, type AdminKind, type AdminOp, type AuthOp, type CommittedEvent, type FaultWindow } from "./history.js";
import { type SentinelRedis, startSentinelRedis } from "../../../test/helpers/redis-sentinel.js";

/**
 * One history-checker run: three real replica processes, each reaching Postgres through a fault-injecting TCP
 * proxy of its own (LISTEN connections through one more, Redis through another, Redis a server of the run's
 * own), concurrent clients issuing random admin changes and authenticating every token ever issued on every
 * replica, and faults injected one at a time while they run. Bounded in time and in count.
 *
 * With failovers among its faults, the run's Postgres is a primary with a streaming standby of its own
 * (test/support/pg-cluster.mjs) and its Redis has a replica syncing through a proxy; each failover promotes the
 * standby (replica), moves every proxy to it, and builds a new standby (replica) for the next one. A Sentinel
 * segment (`redis: "sentinel"`) runs the replicas on a Sentinel-managed Redis instead, without Redis proxies.
 */
export interface Profile {
  name: string;
  durationMs: number;
  /** Stop once this many requests were recorded. */
  maxOps: number;
  adminWorkers: number;
  authWorkers: number;
  /** Keys at the start; more are generated as the run goes. */
  keys: number;
  /** Fault kinds to cycle through, by name (all of FAULTS when absent). */
  faults?: string[];
  /** Relative weights of the admin operations. */
  mix?: Partial<Record<AdminChoice, number>>;
  /** Replicas the slowing fault may pick (all when absent). */
  slowable?: string[];
  /** Send most authentications to a replica under a slowing fault while one is (the self-check of joined reads). */
  authFocusOnSlowed?: boolean;
  /** Requests each authenticating client keeps in flight (1 when absent: it waits for each answer). */
  authInFlight?: number;
  /** Pause of each admin client between its requests (ms, at most; random below it). */
  adminPauseMs?: number;
  /** The least pause of each admin client between its requests (ms; 0 when absent). */
  adminPauseMinMs?: number;
  /** Extra environment for the replicas (the test-build switch that reinstates a known bug). */
  env?: Record<string, string>;
  /**
   * Fault kinds fired after every other fault, in turn (the long profile's failovers: many more of them than one
   * per cycle). Kinds listed here are left out of the cycle itself.
   */
  interleave?: string[];
  /** An interleaved fault after every this many others (1 when absent). */
  interleaveEvery?: number;
  /** Budget keys being spent at any moment (priced requests until each is spent; then another); 0 when absent. */
  budgetKeys?: number;
  /** Clients sending budget keys priced requests. */
  budgetClients?: number;
  /** Pause of each budget client between its requests (ms, at most; random below it). */
  budgetPauseMs?: number;
  /** A budget key's max_budget, in priced requests (30 when absent). */
  budgetRequests?: number;
  /** How long a Redis failover keeps the replica from syncing before the primary dies (ms; 1,500 when absent). */
  redisLagMs?: number;
  /** Postgres a primary with a standby of its own even without failovers among the faults (to compare costs). */
  pgPair?: boolean;
  /** "sentinel": Redis is a master, a replica and three Sentinels, found by the replicas through REDIS_SENTINELS. */
  redis?: "proxied" | "sentinel";
  /** Clients sending requests to the routed models while their deployments fail on command (routing.ts); 0 when absent. */
  routingClients?: number;
}

/**
 * "toggle": block the key if the client last saw it unblocked, else unblock it (every change flips its answer);
 * "team_toggle": the same for a team.
 */
type AdminChoice = AdminKind | "race" | "invalid" | "toggle" | "team_toggle";

const DEFAULT_MIX: Record<AdminChoice, number> = {
  user_delete: 1,
  user_new: 0,
  team_new: 1,
  team_block: 3,
  team_unblock: 3,
  regenerate: 26,
  block: 9,
  unblock: 9,
  update: 12,
  delete: 4,
  generate: 6,
  end_grace: 7,
  reset_spend: 4,
  race: 8,
  invalid: 2,
  toggle: 0,
  team_toggle: 0,
  user_models: 2,
  team_models: 2,
  team_delete: 1,
  model_new: 2,
  model_update: 1,
  model_delete: 2,
};

/** A mix of only these operations: every other weight 0 (the self-check proofs, each shaped for one bug). */
export function onlyThese(weights: Partial<Record<AdminChoice, number>>): Record<AdminChoice, number> {
  return { ...(Object.fromEntries(Object.keys(DEFAULT_MIX).map((k) => [k, 0])) as Record<AdminChoice, number>), ...weights };
}

export const PG_SWITCHOVER = "postgres switchover (clean)";
export const PG_FAILOVER_LOSSY = "postgres failover losing commits";
export const REDIS_FAILOVER = "redis failover to a lagging replica";
export const SENTINEL_FAILOVER = "sentinel failover";

export const PROFILES: Record<string, Profile> = {
  short: { name: "short", durationMs: 62_000, maxOps: 200_000, adminWorkers: 3, authWorkers: 6, authInFlight: 3, keys: 8, budgetKeys: 2, budgetClients: 1, routingClients: 3 },
  long: {
    name: "long",
    durationMs: 720_000,
    maxOps: 300_000,
    authInFlight: 3,
    adminWorkers: 4,
    authWorkers: 8,
    keys: 12,
    budgetKeys: 2,
    budgetClients: 1,
    // A failover after every other fault of the cycle, in turn: Postgres clean, Redis, Postgres losing commits, Redis.
    interleave: [PG_SWITCHOVER, REDIS_FAILOVER, PG_FAILOVER_LOSSY, REDIS_FAILOVER],
    interleaveEvery: 2,
  },
};

/**
 * The Sentinel segment of a profile: the replicas find Redis through Sentinels, so the faults that act on the
 * per-replica Redis proxies cannot run in it; its own faults are the Sentinels' failover and a few that need no
 * Redis proxy. `npm test` and `npm run chaos` run it after the main run.
 */
export function sentinelSegment(profile: Profile): Profile {
  return {
    ...profile,
    name: `${profile.name}-sentinel`,
    durationMs: profile.name === "long" ? 60_000 : 8_000,
    redis: "sentinel",
    interleave: undefined,
    faults: [SENTINEL_FAILOVER, "a replica SIGKILLed and restarted", "Postgres connections cut (proxy)"],
  };
}

export interface RunReport {
  profile: string;
  seconds: number;
  ops: number;
  faults_injected: Record<string, number>;
  check: CheckResult;
  /** Final state: the database against the model. */
  final_state_mismatches: number;
  violations: Violation[];
  /** Requests recorded up to the first violation (how soon the checker saw it); null with none. */
  first_violation_after_ops: number | null;
  /** Postgres promotions during the run. */
  pg_generations: number;
  /** Round trips through the checker's own Postgres proxies slower than the canary's threshold, outside injected faults (path-canary.ts). */
  slow_checker_proxy: { windows: number; totalMs: number; longestMs: number };
  /** The routing part (routing.ts); null when the profile sends no routed requests. */
  routing: RoutingSummary | null;
}

const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
// A new Redis replica's first sync starts at once (Redis 7 waits 5 s for more replicas to share a diskless transfer).
const FAST_REPLICATION = ["--repl-diskless-sync-delay", "0"];
// The replicas' Postgres breaker stays open this long after failures (src/faults/breaker.ts resetTimeoutMs).
const BREAKER_RESET_MS = 2_000;
/** Requests the authenticating clients keep in flight while they focus on a slowed replica (open loop, below). */
const SLOWED_IN_FLIGHT_CAP = 2_000;
const GRACES = ["0s", "2s", "1h"] as const;
// Teams every run creates first and never deletes; more are created and deleted as the run goes. A team changes
// its keys' answers by being blocked and unblocked, by its model list (a key's own list must stay within it: an
// update asking for more is refused), and by its delete (which deletes its keys).
const TEAMS = ["team-red", "team-blue"] as const;
const MODEL_CHOICES: string[][] = [[], ["mock-gpt"], ["mock-embedding"], ["mock-gpt", "mock-other"]];
// A user's models narrow its keys' (the probe model is mock-gpt): some lists allow it, some refuse it.
const USER_MODEL_CHOICES: string[][] = [[], ["mock-gpt"], ["mock-other"], ["mock-gpt", "mock-other"]];
// The database model the run adds, updates and deletes through /model/*; a probe key asks for it now and then.
const DB_MODEL = "db-model";
const MODELS_NAME = "models:all";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

interface KnownKey {
  keyId: string;
  /** The user it belongs to, if any (a user's delete deletes its keys). */
  user?: string | undefined;
  /** The team it is in, if any (a team's delete deletes its keys). */
  team?: string | undefined;
  /** plaintext → token hash, every token ever issued for the key, oldest first. */
  tokens: Array<{ key: string; token: string }>;
  deleted: boolean;
  /** As the last acknowledged block or unblock left it. */
  blocked: boolean;
}

interface Fault {
  name: string;
  postgresImpaired?: boolean;
  partition?: boolean;
  notificationsLost?: boolean;
  /** Needs the run's Postgres to be a primary with a standby (a pair of its own, not the shared server). */
  pgPair?: boolean;
  /** Needs the run's Redis to have a replica that syncs through a proxy. */
  redisReplica?: boolean;
  /** Acts on the per-replica Redis proxies (impossible when the replicas find Redis through Sentinels). */
  redisProxies?: boolean;
  /** Runs only in the Sentinel segment. */
  sentinel?: boolean;
  /** May end its window itself (`window.end`) before it returns: what follows (a new standby built) is no fault. */
  run(ctx: FaultContext, window: FaultWindow): Promise<void>;
}

interface FaultContext {
  cluster: Cluster;
  /** A pool on the current Postgres primary, straight (no proxy); replaced at each failover. */
  admin: pg.Pool;
  poolProxies: Map<string, TcpProxy>;
  listenProxy: TcpProxy;
  /** One per replica, like the pool proxies. */
  redisProxies: Map<string, TcpProxy>;
  redisServer: RedisServer;
  snapshot: { path: string; at: number } | null;
  /**
   * Replicas the admin clients keep away from, as a load balancer drains a slow backend: a replica whose
   * answers from Postgres take seconds would hold the event-order lock for as long (docs/coherence.md).
   */
  adminAvoid: Set<string>;
  /** Replicas the slowing fault may pick. */
  slowable: string[];
  /** The window of the fault running now. */
  window: FaultWindow | null;
  restartReplica(name: string, extraEnv?: Record<string, string>): Promise<void>;
  /** The standby promoted, every Postgres proxy moved to it, a new standby built; `lossy`: WAL withheld first. */
  pgFailover(lossy: boolean, window: FaultWindow): Promise<void>;
  /** The Redis replica made to lag, the primary killed, the replica promoted, every Redis proxy moved to it. */
  redisFailover(window: FaultWindow): Promise<void>;
  sentinelFailover(window: FaultWindow): Promise<void>;
}

/** Charges a live ledger re-seeded from Postgres may miss from now on: those not flushed yet (checker.ts checkBudgets). */
function spendMayBeForgotten(window: FaultWindow | null, from: number, to = from): void {
  if (!window) return;
  window.spendMayBeForgotten = [...(window.spendMayBeForgotten ?? []), { from, to }];
}

const hold = (ms: number) => sleep(ms);
const allPgProxies = (ctx: FaultContext) => [...ctx.poolProxies.values(), ctx.listenProxy];
// Never the checker's own LISTEN connection: it dates every change (commit-clock.ts).
const terminate = (ctx: FaultContext, listenersOnly: boolean) =>
  ctx.admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> '${CHECKER_APPLICATION_NAME}'
       AND ($1::boolean IS FALSE OR application_name LIKE 'gatehouse-listen:%')`,
    [listenersOnly],
  );

export const FAULTS: Fault[] = [
  // Statements in flight die with their connections, like "Postgres connections cut": a change caught mid-way may get
  // the documented 503 (its retries can meet the Postgres breaker, opened by the burst of failures), never a 500.
  {
    name: "pg_terminate_backend: every gateway connection",
    postgresImpaired: true,
    notificationsLost: true,
    run: async (ctx) => void (await terminate(ctx, false)),
  },
  { name: "LISTEN connections cut (pg_terminate_backend)", notificationsLost: true, run: async (ctx) => void (await terminate(ctx, true)) },
  {
    name: "LISTEN connections blackholed 3 s (notifications lost silently)",
    notificationsLost: true,
    run: async (ctx) => {
      ctx.listenProxy.setMode("blackhole");
      await hold(3_000);
      ctx.listenProxy.setMode("pass");
      ctx.listenProxy.cutAll();
    },
  },
  {
    name: "Postgres blackholed 3 s",
    postgresImpaired: true,
    notificationsLost: true,
    run: async (ctx) => {
      for (const p of allPgProxies(ctx)) p.setMode("blackhole");
      for (const p of allPgProxies(ctx)) p.cutAll();
      await hold(3_000);
      for (const p of allPgProxies(ctx)) p.setMode("pass");
      for (const p of allPgProxies(ctx)) p.cutAll();
    },
  },
  {
    // Queries run at once in Postgres, answers reach the replica 3 s later, and it cannot reach Redis, so every
    // look-up it makes is one of those slow reads. Its LISTEN connection is not slowed: it hears of changes while
    // reads that began before them are still on their way.
    name: "one replica: Postgres answers +3 s and Redis unreachable, 8 s",
    postgresImpaired: true,
    redisProxies: true,
    run: async (ctx) => {
      const name = pick(ctx.slowable);
      const pool = ctx.poolProxies.get(name)!;
      const redis = ctx.redisProxies.get(name)!;
      ctx.adminAvoid.add(name);
      pool.setLatency(3_000, "toClient");
      redis.setMode("blackhole");
      redis.cutAll();
      await hold(8_000);
      pool.setLatency(0);
      ctx.adminAvoid.delete(name);
      redis.setMode("pass");
      redis.cutAll();
    },
  },
  {
    name: "Postgres connections cut (proxy)",
    postgresImpaired: true,
    notificationsLost: true,
    run: async (ctx) => {
      for (const p of allPgProxies(ctx)) p.cutAll();
    },
  },
  {
    name: "connection dies during COMMIT",
    postgresImpaired: true,
    run: async (ctx) => {
      const proxy = pick([...ctx.poolProxies.values()]);
      await Promise.race([proxy.cutOnce("COMMIT", { forward: Math.random() < 0.5 }), hold(3_000)]);
    },
  },
  { name: PG_SWITCHOVER, postgresImpaired: true, notificationsLost: true, pgPair: true, run: (ctx, w) => ctx.pgFailover(false, w) },
  { name: PG_FAILOVER_LOSSY, postgresImpaired: true, notificationsLost: true, pgPair: true, run: (ctx, w) => ctx.pgFailover(true, w) },
  { name: REDIS_FAILOVER, redisReplica: true, redisProxies: true, run: (ctx, w) => ctx.redisFailover(w) },
  { name: SENTINEL_FAILOVER, sentinel: true, run: (ctx, w) => ctx.sentinelFailover(w) },
  { name: "Redis paused 3 s (SIGSTOP)", redisProxies: true, run: (ctx) => ctx.redisServer.pause(3_000) },
  {
    name: "Redis restarted empty",
    redisProxies: true,
    run: (ctx, w) => {
      spendMayBeForgotten(w, checkerNow());
      return ctx.redisServer.restart(300);
    },
  },
  {
    name: "Redis restarted from an older snapshot",
    redisProxies: true,
    run: async (ctx, w) => {
      if (!ctx.snapshot) return;
      spendMayBeForgotten(w, checkerNow());
      await ctx.redisServer.restartFrom(ctx.snapshot.path, 300);
      ctx.snapshot = null;
    },
  },
  {
    name: "Redis connections cut (proxy)",
    redisProxies: true,
    run: async (ctx) => {
      for (const p of ctx.redisProxies.values()) p.cutAll();
    },
  },
  {
    name: "a replica SIGKILLed and restarted",
    notificationsLost: true,
    run: async (ctx) => ctx.restartReplica(pick(ctx.cluster.replicas.filter(alive)).name),
  },
  {
    name: "a replica restarted under a wall clock shifted by ±20 s",
    notificationsLost: true,
    run: async (ctx) => {
      if (!existsSync(LIBFAKETIME)) return;
      const shift = Math.random() < 0.5 ? "+20s" : "-20s";
      await ctx.restartReplica("C", { LD_PRELOAD: LIBFAKETIME, FAKETIME: shift, FAKETIME_DONT_FAKE_MONOTONIC: "1" });
    },
  },
  {
    name: "Postgres and Redis both blackholed 4 s (partition)",
    postgresImpaired: true,
    redisProxies: true,
    partition: true,
    notificationsLost: true,
    run: async (ctx) => {
      const proxies = [...allPgProxies(ctx), ...ctx.redisProxies.values()];
      for (const p of proxies) p.setMode("blackhole");
      for (const p of proxies) p.cutAll();
      await hold(4_000);
      for (const p of proxies) p.setMode("pass");
      for (const p of proxies) p.cutAll();
    },
  },
];

function alive(r: Replica): boolean {
  return r.child.exitCode === null && r.child.signalCode === null;
}

/** The run's gateway configuration: the mock models, and a priced one for budget keys (limits fail closed, so a 200 past a budget can only come from a ledger that forgot spend). */
function runConfig(routing: RoutingUpstream | null): ConfigFile {
  const priced = pricedModel(DEFAULT_CHECKER_OPTIONS.pricedModel);
  const routed = routing ? routingConfig(routing.url, priced) : null;
  return {
    ...DEFAULT_TEST_CONFIG,
    model_list: [...(DEFAULT_TEST_CONFIG.model_list ?? []), priced, ...(routed?.model_list ?? [])],
    ...(routed ? { router_settings: routed.router_settings } : {}),
    gatehouse_settings: { limits: { flush_interval_ms: DEFAULT_CHECKER_OPTIONS.flushIntervalMs, prefetch: 0, redis_unavailable: "fail_closed" } },
  };
}

/** The faults a profile fires, in the order it fires them (the interleaved ones after every other fault). */
export function faultSchedule(profile: Profile): Fault[] {
  const sentinel = profile.redis === "sentinel";
  const eligible = FAULTS.filter((f) => (sentinel ? !f.redisProxies : !f.sentinel));
  const chosen = profile.faults ? eligible.filter((f) => profile.faults!.includes(f.name)) : eligible;
  const interleave = (profile.interleave ?? []).map((n) => FAULTS.find((f) => f.name === n)!);
  if (interleave.length === 0) return chosen;
  const base = chosen.filter((f) => !interleave.includes(f));
  const every = profile.interleaveEvery ?? 1;
  // Over as many cycles of the base faults as it takes to pair each position with each interleaved one.
  const cycles = Math.max(1, interleave.length * every);
  return Array.from({ length: cycles }, () => base)
    .flat()
    .flatMap((f, i) => ((i + 1) % every === 0 ? [f, interleave[Math.floor(i / every) % interleave.length]!] : [f]));
}

export interface RunResources {
  /** The Sentinel segment's Redis, started ahead (its Sentinels take seconds to find each other). */
  sentinel?: Promise<SentinelRedis>;
}

export async function runHistory(profile: Profile, log: (line: string) => void = () => {}, resources: RunResources = {}): Promise<RunReport> {
  const setupStarted = Date.now();
  const history = new History();
  const cleanups: Array<() => Promise<unknown>> = [];
  const faults = faultSchedule(profile);
  const sentinelMode = profile.redis === "sentinel";
  // A Postgres of the run's own, primary and standby, when it fails over; else a database on the shared server.
  const pair: PgPair | null = profile.pgPair || faults.some((f) => f.pgPair) ? await startPgPair() : null;
  if (pair)
    cleanups.push(async () => {
      await standbyReady;
      await pair.stop();
    });
  let redisServer: RedisServer | null = null;
  let sentinel: SentinelRedis | null = null;
  if (sentinelMode) {
    sentinel = await (resources.sentinel ?? startSentinelRedis());
    cleanups.push(() => sentinel!.stop());
  } else {
    redisServer = await startRedisServer({ extraArgs: FAST_REPLICATION });
    cleanups.push(() => ctx.redisServer.stop());
  }
  // The replica a Redis failover promotes: it syncs through a proxy of its own, which the failover blackholes.
  const replicationProxy = await startTcpProxy("127.0.0.1", redisServer?.port ?? 1);
  cleanups.push(() => replicationProxy.close());
  let redisReplica = faults.some((f) => f.redisReplica)
    ? await startRedisServer({ replicaOf: { host: "127.0.0.1", port: replicationProxy.port }, extraArgs: FAST_REPLICATION })
    : null;
  cleanups.push(async () => {
    await redisReplicaReady;
    await redisReplica?.stop();
  });
  // The routing part's upstream, its flapping deployments dead or alive as it says.
  const routingUpstream = (profile.routingClients ?? 0) > 0 ? new RoutingUpstream() : null;
  if (routingUpstream) {
    await routingUpstream.start();
    cleanups.push(() => routingUpstream.close());
  }
  const routedOps: RoutedOp[] = [];
  const pgPort = pair?.primary.port ?? 5432;
  const listenProxy = await startTcpProxy("127.0.0.1", pgPort);
  const names = ["A", "B", "C"];
  const poolProxies = new Map<string, TcpProxy>();
  const redisProxies = new Map<string, TcpProxy>();
  for (const n of names) {
    poolProxies.set(n, await startTcpProxy("127.0.0.1", pgPort));
    if (redisServer) redisProxies.set(n, await startTcpProxy("127.0.0.1", redisServer.port));
  }
  cleanups.push(async () => {
    for (const p of [...poolProxies.values(), listenProxy, ...redisProxies.values()]) await p.close();
  });
  const redisEnv = (name: string): Record<string, string> =>
    sentinel ? { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name } : { REDIS_URL: `redis://127.0.0.1:${redisProxies.get(name)!.port}` };
  // Only the database name of this URL matters: every replica reaches Postgres through its proxies.
  const pgUrl = (url: string) => pair?.primary.url ?? url;
  const cluster = await startCluster({
    size: 1,
    config: runConfig(routingUpstream),
    databaseUrl: (url) => viaProxy(pgUrl(url), poolProxies.get("A")!),
    listenUrl: (url) => viaProxy(pgUrl(url), listenProxy),
    env: { ...redisEnv("A"), ...profile.env },
    // HISTORY_REPLICA_LOGS=<dir>: every replica's log lines are kept and written there at the end (a closer look).
    keepOutput: !!process.env.HISTORY_REPLICA_LOGS,
  });
  const replicaLogs: Array<{ name: string; output: string[] }> = [];
  cleanups.unshift(async () => {
    const dir = process.env.HISTORY_REPLICA_LOGS;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      for (const [i, r] of [...replicaLogs, ...cluster.replicas].entries()) writeFileSync(path.join(dir, `${profile.name}-${r.name}-${i}.log`), r.output.join("\n"));
    }
    await cluster.close();
  });
  const replicaEnv = (name: string) => ({ DATABASE_URL: viaProxy(pgUrl(cluster.db.url), poolProxies.get(name)!), ...redisEnv(name) });
  for (const n of names.slice(1)) await cluster.addReplica(n, replicaEnv(n));
  /** The Postgres primary now, straight (the checker's own connections never go through a fault proxy). */
  let primaryUrl = pgUrl(cluster.db.url);
  const newAdminPool = (url: string) => {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pool.on("error", () => {});
    return pool;
  };
  // Each change is dated by its NOTIFY's arrival on the checker's own LISTEN connection (commit-clock.ts).
  const clock = new CommitClock();
  await clock.follow(primaryUrl, 0);
  cleanups.unshift(() => clock.close());
  /** The Postgres generation now (one more at each promotion), the newest event id its database held when it began, and when the proxies moved to it. */
  let gen = 0;
  const forkIds: number[] = [0];
  const switches: Switch[] = [];
  let pgFailovers = 0;
  // After a failover the next standby (Redis replica) is built while the run goes on; the next failover waits for it.
  let standbyReady: Promise<void> = Promise.resolve();
  let redisReplicaReady: Promise<void> = Promise.resolve();

  // The checker's own proxies slowed by a busy machine count as an impaired path to Postgres (path-canary.ts).
  const canary = new PathCanary(
    names.map((n) => ({ name: n, url: () => viaProxy(pgUrl(cluster.db.url), poolProxies.get(n)!) })),
    (window) => history.faults.push(window),
  );
  cleanups.push(() => canary.stop());
  const known: KnownKey[] = [];
  const faultsInjected: Record<string, number> = {};
  const started = Date.now();
  const deadline = started + profile.durationMs;
  let stopping = false;
  // At least the profile's duration, and until every kind of fault in the schedule fired once (a loaded machine makes faults
  // slower; a run that never reached some of them would prove nothing about them), up to twice the duration.
  let scheduleDone = faults.length === 0;
  const running = () => !stopping && history.ops.length < profile.maxOps && (Date.now() < deadline || (!scheduleDone && Date.now() < deadline + profile.durationMs));
  const mix = { ...DEFAULT_MIX, ...profile.mix };
  const mixTotal = Object.values(mix).reduce((a, b) => a + b, 0);
  // Requests for the database model only when the run changes it (a proof about keys needs every request on keys).
  const probesModels = mix.model_new > 0;
  const chooseAdmin = (): AdminChoice => {
    let r = Math.random() * mixTotal;
    for (const [k, w] of Object.entries(mix) as Array<[AdminChoice, number]>) {
      r -= w;
      if (r < 0) return k;
    }
    return "regenerate";
  };
  const liveReplicas = () => cluster.replicas.filter(alive);
  const adminReplicas = () => {
    const live = liveReplicas();
    const preferred = live.filter((r) => !ctx.adminAvoid.has(r.name));
    return preferred.length > 0 ? preferred : live;
  };

  async function call(replica: Replica, path: string, key: string, body: unknown, headers: Record<string, string> = {}) {
    try {
      const res = await fetch(`${replica.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      const json = (await res.json().catch(() => null)) as any;
      return { status: res.status, body: json, eventIds: (res.headers.get("gatehouse-event-id") ?? "").split(",").filter(Boolean).map(Number) };
    } catch {
      return { status: 0, body: null, eventIds: [] as number[] };
    }
  }

  /** One admin request, recorded with its answer. */
  async function adminRequest(
    kind: AdminKind,
    replica: Replica,
    path: string,
    body: unknown,
    addressed: string[],
    extra: Partial<AdminOp> = {},
    headers: Record<string, string> = {},
  ): Promise<AdminOp> {
    const invoke = checkerNow();
    const res = await call(replica, path, cluster.masterKey, body, headers);
    const complete = checkerNow();
    const op = history.record<AdminOp>({
      type: "admin",
      kind,
      replica: replica.name,
      invoke,
      complete,
      status: res.status,
      code: res.body?.error?.code ?? undefined,
      addressed,
      eventIds: res.eventIds,
      ...extra,
    });
    if (res.status === 200 && (kind === "generate" || kind === "regenerate") && res.body?.key) {
      op.newToken = res.body.token;
      op.keyId = res.body.key_id;
      if (res.body.revoke_at) op.revokeAt = Date.parse(res.body.revoke_at);
    }
    if (res.status === 200 && kind === "end_grace") op.revoked = (res.body?.revoked ?? []).map((r: { token: string }) => r.token);
    if (res.status === 200 && kind === "model_new" && typeof res.body?.model_id === "string") op.modelId = res.body.model_id;
    return Object.assign(op, { plaintext: res.body?.key as string | undefined });
  }

  /** Teams alive as the client last saw them: the run's fixed ones and those it created and has not deleted. */
  const liveTeams: string[] = [...TEAMS];
  let teamsMade = 0;
  /** Teams the client last saw blocked (for team_toggle). */
  const teamsBlocked = new Set<string>();
  /** Users created by the run and not deleted; a user's delete deletes its keys (one event on the user). */
  const liveUsers: string[] = [];
  let usersMade = 0;
  const newUser = async (replica: Replica): Promise<string | undefined> => {
    const user = `user-${++usersMade}`;
    const op = await adminRequest("user_new", replica, "/user/new", { user_id: user, auto_create_key: false }, [`user:${user}`], { user });
    if (op.status !== 200) return undefined;
    liveUsers.push(user);
    return user;
  };
  const generate = async (replica: Replica) => {
    // A quarter belong to a user (now and then a new one); of the others, two in three join one of the run's teams:
    // a team's block refuses all of them (one event on the team). A key has a team or a user, never both, so its
    // answer combines two records, each read at its own moment (the checker's model).
    const user = Math.random() < 0.25 ? (liveUsers.length > 0 && Math.random() < 0.7 ? pick(liveUsers) : await newUser(replica)) : undefined;
    const team = user === undefined && Math.random() < 0.67 ? pick(liveTeams) : undefined;
    const body = { ...(team ? { team_id: team } : {}), ...(user ? { user_id: user } : {}) };
    const op = (await adminRequest("generate", replica, "/key/generate", body, [], { models: [], ...(team ? { team } : {}), ...(user ? { user } : {}) })) as AdminOp & {
      plaintext?: string;
    };
    if (op.status === 200 && op.plaintext && op.keyId)
      known.push({ keyId: op.keyId, user, team, tokens: [{ key: op.plaintext, token: op.newToken! }], deleted: false, blocked: false });
  };

  /** A rotation, retried with its Idempotency-Key until its outcome is known (every attempt is recorded). */
  const regenerate = async (key: KnownKey, target: { key: string; token: string }, replica: Replica, raced = false) => {
    const grace = pick(GRACES);
    const idem = randomUUID();
    const giveUpAt = Date.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      const others = adminReplicas();
      if (attempt > 0 && others.length === 0) return; // every replica is down (restarting): the outcome stays unknown
      const via = attempt === 0 ? replica : pick(others);
      const op = (await adminRequest(
        "regenerate",
        via,
        `/key/${target.key}/regenerate`,
        { grace_period: grace },
        [target.token],
        { grace, raced },
        { "idempotency-key": idem },
      )) as AdminOp & { plaintext?: string };
      if (op.status === 200) {
        if (op.plaintext && op.newToken && !key.tokens.some((t) => t.token === op.newToken)) key.tokens.push({ key: op.plaintext, token: op.newToken });
        return;
      }
      const retriable = op.status === 0 || op.status >= 500 || op.code === "rotation_in_progress";
      if (!retriable || Date.now() > giveUpAt || stopping) return;
      await sleep(100 + Math.random() * 200);
    }
  };

  /** Any token of the key: its newest one mostly, an older one (perhaps in its grace) sometimes. */
  const addressOf = (key: KnownKey) => (Math.random() < 0.65 ? key.tokens.at(-1)! : pick(key.tokens.slice(-4)));

  /** The key that asks for the database model (generated after the run's first keys). */
  let modelProbe: { key: string; token: string } | undefined;
  /** The database model's deployments the client knows of (from /model/new answers). */
  const modelIds: string[] = [];
  const modelAction = async (choice: "model_new" | "model_update" | "model_delete", replica: Replica): Promise<void> => {
    if (choice === "model_new" || modelIds.length === 0) {
      if (modelIds.length >= 2) return modelAction("model_delete", replica);
      const op = await adminRequest("model_new", replica, "/model/new", { model_name: DB_MODEL, litellm_params: { model: `mock/${DB_MODEL}` } }, [MODELS_NAME]);
      if (op.status === 200 && op.modelId) modelIds.push(op.modelId);
      return;
    }
    const id = pick(modelIds);
    if (choice === "model_update") {
      await adminRequest("model_update", replica, "/model/update", { model_id: id, model_info: { touched: Date.now() } }, [MODELS_NAME], { modelId: id });
      return;
    }
    const op = await adminRequest("model_delete", replica, "/model/delete", { id }, [MODELS_NAME], { modelId: id });
    if (op.status === 200 || op.status === 404) modelIds.splice(modelIds.indexOf(id), 1);
  };

  const adminAction = async (choice: AdminChoice, key: KnownKey | undefined, replica: Replica, raced = false, chosenTeam?: string): Promise<void> => {
    if (choice === "model_new" || choice === "model_update" || choice === "model_delete") return modelAction(choice, replica);
    if (choice === "user_models") {
      const user = liveUsers.length > 0 ? pick(liveUsers) : undefined;
      if (!user) return;
      const models = pick(USER_MODEL_CHOICES);
      await adminRequest("user_models", replica, "/user/update", { user_id: user, models }, [`user:${user}`], { user, models, raced });
      return;
    }
    if (choice === "generate" || !key) return generate(replica);
    if (choice === "user_new") return void (await newUser(replica));
    if (choice === "user_delete") {
      const user = liveUsers.length > 0 ? pick(liveUsers) : undefined;
      if (!user) return;
      const op = await adminRequest("user_delete", replica, "/user/delete", { user_ids: [user] }, [`user:${user}`], { user, raced });
      if (op.status === 200) {
        liveUsers.splice(liveUsers.indexOf(user), 1);
        for (const k of known) if (k.user === user) k.deleted = true;
      }
      return;
    }
    if (choice === "team_new") {
      const team = `team-${++teamsMade}`;
      const op = await adminRequest("team_new", replica, "/team/new", { team_id: team }, [`team:${team}`], { team });
      if (op.status === 200) liveTeams.push(team);
      return;
    }
    if (choice === "team_delete") {
      const made = liveTeams.filter((t) => !(TEAMS as readonly string[]).includes(t));
      if (made.length === 0) return adminAction("team_new", key, replica);
      const team = pick(made);
      const op = await adminRequest("team_delete", replica, "/team/delete", { team_ids: [team] }, [`team:${team}`], { team, raced });
      if (op.status === 200) {
        liveTeams.splice(liveTeams.indexOf(team), 1);
        for (const k of known) if (k.team === team) k.deleted = true;
      }
      return;
    }
    if (choice === "team_models") {
      const team = pick(liveTeams);
      const models = pick(USER_MODEL_CHOICES);
      await adminRequest("team_models", replica, "/team/update", { team_id: team, models }, [`team:${team}`], { team, models, raced });
      return;
    }
    if (choice === "team_toggle") {
      const team = pick(TEAMS);
      return adminAction(teamsBlocked.has(team) ? "team_unblock" : "team_block", key, replica, raced, team);
    }
    if (choice === "team_block" || choice === "team_unblock") {
      const team = chosenTeam ?? pick(TEAMS);
      const op = await adminRequest(choice, replica, `/team/${choice === "team_block" ? "block" : "unblock"}`, { team_id: team }, [`team:${team}`], { team, raced });
      if (op.status === 200 && choice === "team_block") teamsBlocked.add(team);
      if (op.status === 200 && choice === "team_unblock") teamsBlocked.delete(team);
      return;
    }
    const target = addressOf(key);
    switch (choice) {
      case "regenerate":
        return regenerate(key, target, replica, raced);
      case "toggle":
        return adminAction(key.blocked ? "unblock" : "block", key, replica, raced);
      case "block":
      case "unblock": {
        const op = await adminRequest(choice, replica, `/key/${choice}`, { key: target.key }, [target.token], { raced });
        if (op.status === 200) key.blocked = choice === "block";
        return;
      }
      case "update": {
        const models = pick(MODEL_CHOICES);
        await adminRequest("update", replica, "/key/update", { key: target.key, models }, [target.token], { models, raced });
        return;
      }
      case "end_grace":
        await adminRequest("end_grace", replica, `/key/${target.key}/end_grace`, {}, [target.token], { raced });
        return;
      case "reset_spend":
        await adminRequest("reset_spend", replica, `/key/${target.key}/reset_spend`, { reset_to: 0 }, [target.token], { raced });
        return;
      case "delete": {
        const other = Math.random() < 0.3 ? pick(known.filter((k) => !k.deleted && k !== key)) : undefined;
        const targets = other ? [target, addressOf(other)] : [target];
        const op = await adminRequest(
          "delete",
          replica,
          "/key/delete",
          { keys: targets.map((t) => t.key) },
          targets.map((t) => t.token),
          { raced },
        );
        if (op.status === 200) {
          key.deleted = true;
          if (other) other.deleted = true;
        }
        return;
      }
      case "invalid":
        await adminRequest("regenerate", replica, `/key/${target.key}/regenerate`, { grace_period: pick(["1 hour", "-5s", "soon", "9999999999d"]) }, [target.token], {
          invalid: true,
        });
        return;
      case "race": {
        // Two clients change the same key at once from two replicas, 0–5 ms apart.
        const candidates = adminReplicas();
        if (candidates.length === 0) return;
        const [r1, r2] = [pick(candidates), pick(candidates)];
        const kinds: AdminChoice[] = ["regenerate", "delete", "block", "update", "end_grace", "unblock"];
        const first = Math.random() < 0.6 ? "regenerate" : pick(kinds);
        const second = Math.random() < 0.5 ? "delete" : pick(kinds);
        await Promise.all([adminAction(first, key, r1, true), sleep(Math.random() * 5).then(() => adminAction(second, key, r2, true))]);
        return;
      }
    }
  };

  const adminWorker = async () => {
    while (running()) {
      const replicas = adminReplicas();
      if (replicas.length === 0) {
        await sleep(50);
        continue;
      }
      const live = known.filter((k) => !k.deleted);
      const choice = live.length < profile.keys / 2 ? "generate" : chooseAdmin();
      await adminAction(choice, pick(live), pick(replicas));
      const least = profile.adminPauseMinMs ?? 0;
      await sleep(least + Math.random() * Math.max(0, (profile.adminPauseMs ?? 40) - least));
    }
  };

  const authWorker = async () => {
    /** This client's requests in flight (up to profile.authInFlight). */
    const mine = new Set<Promise<void>>();
    while (running()) {
      const replicas = liveReplicas();
      if (replicas.length === 0 || known.length === 0) {
        await sleep(20);
        continue;
      }
      // Now and then the database model, with a key nothing changes: its answer follows the model's changes only.
      if (modelProbe && probesModels && Math.random() < 0.12) {
        const replica = pick(replicas);
        const invoke = checkerNow();
        const res = await call(replica, "/v1/chat/completions", modelProbe.key, chatBody(DB_MODEL));
        history.record<AuthOp>({
          type: "auth",
          replica: replica.name,
          invoke,
          complete: checkerNow(),
          status: res.status,
          code: res.body?.error?.code ?? undefined,
          token: modelProbe.token,
          model: DB_MODEL,
        });
        await sleep(Math.random() * 8);
        continue;
      }
      const key = Math.random() < 0.8 ? pick(known.filter((k) => !k.deleted).concat(known.slice(-4))) : pick(known);
      const t = Math.random() < 0.6 ? key.tokens.at(-1)! : pick(key.tokens.slice(-4));
      const slowed = profile.authFocusOnSlowed ? replicas.filter((r) => ctx.adminAvoid.has(r.name)) : [];
      const replica = slowed.length > 0 && Math.random() < 0.8 ? pick(slowed) : pick(replicas);
      const probe = authenticate(replica, t.token, t.key);
      // Focused clients never wait for an answer: one that waited on a replica just slowed would sit out the first
      // seconds of the fault, the ones in which reads from before a change are still on their way.
      if (slowed.length === 0 && !profile.authFocusOnSlowed) {
        // A token no replica knows waits up to a heartbeat for a catch-up (docs/coherence.md): a client that waited
        // for each answer would spend most of its time on those. A few requests in flight keep it busy.
        inFlight.add(probe);
        mine.add(probe);
        void probe.finally(() => {
          inFlight.delete(probe);
          mine.delete(probe);
        });
        if (mine.size >= (profile.authInFlight ?? 1)) await Promise.race(mine);
        await sleep(Math.random() * 8);
        continue;
      }
      // A slowed replica answers in seconds: requests that waited for each other would all arrive together,
      // right after a read ends. Arrivals spread over time (open loop) are what a busy replica sees — over the whole
      // of each 3 s read: a cap the arrivals reach early in the read would stall every client until it ends, and the
      // requests that come after a change, the ones that must not join a read from before it, would never be sent.
      inFlight.add(probe);
      void probe.finally(() => inFlight.delete(probe));
      if (inFlight.size > SLOWED_IN_FLIGHT_CAP) await Promise.race(inFlight);
      await sleep(Math.random() * 40);
    }
  };
  const inFlight = new Set<Promise<void>>();
  const authenticate = async (replica: Replica, token: string, key: string) => {
    const invoke = checkerNow();
    const res = await call(replica, "/v1/chat/completions", key, chatBody("mock-gpt"));
    const complete = checkerNow();
    history.record<AuthOp>({ type: "auth", replica: replica.name, invoke, complete, status: res.status, code: res.body?.error?.code ?? undefined, token });
  };

  /**
   * Budget keys being spent now: priced requests until the budget has refused them for 3 s (a ledger that forgot
   * spend admits them again), then another.
   */
  const budgetKeys: Array<{ key: string; token: string; refusedSince: number | null }> = [];
  let pricedCost = 0;
  let generatingBudgetKey = false;
  const budgetWorker = async () => {
    while (running()) {
      const live = liveReplicas();
      if (budgetKeys.length < (profile.budgetKeys ?? 0) && !generatingBudgetKey && live.length > 0) {
        generatingBudgetKey = true;
        // A budget of a few dozen requests: spent within seconds, so that every Redis fault meets keys half-way through.
        const maxBudget = (profile.budgetRequests ?? 30) * pricedCost;
        const op = (await adminRequest("generate", pick(adminReplicas()), "/key/generate", { max_budget: maxBudget }, [], { models: [], maxBudget }).finally(() => {
          generatingBudgetKey = false;
        })) as AdminOp & { plaintext?: string };
        if (op.status === 200 && op.plaintext) budgetKeys.push({ key: op.plaintext, token: op.newToken!, refusedSince: null });
        continue;
      }
      if (budgetKeys.length === 0 || live.length === 0) {
        await sleep(50);
        continue;
      }
      const b = pick(budgetKeys);
      const replica = pick(live);
      const invoke = checkerNow();
      const res = await call(replica, "/v1/chat/completions", b.key, chatBody(DEFAULT_CHECKER_OPTIONS.pricedModel, { max_tokens: 1 }));
      const complete = checkerNow();
      history.record<AuthOp>({
        type: "auth",
        replica: replica.name,
        invoke,
        complete,
        status: res.status,
        code: res.body?.error?.code ?? undefined,
        token: b.token,
        model: DEFAULT_CHECKER_OPTIONS.pricedModel,
        ...(res.status === 200 && res.body?.usage ? { cost: costOf(res.body.usage) } : {}),
      });
      if (res.status === 400) b.refusedSince ??= complete;
      if (res.status === 200) b.refusedSince = null;
      if (b.refusedSince !== null && complete - b.refusedSince > 3_000 && budgetKeys.includes(b)) budgetKeys.splice(budgetKeys.indexOf(b), 1);
      await sleep(Math.random() * (profile.budgetPauseMs ?? 60));
    }
  };

  /**
   * Requests for the routed models on random replicas, with the probe key (never changed): what served each and in
   * how many attempts (routing.ts). Paced, so that a replica counting failures alone takes seconds to see enough.
   */
  const routingWorker = async () => {
    while (running()) {
      const live = liveReplicas();
      if (!modelProbe || live.length === 0) {
        await sleep(50);
        continue;
      }
      const replica = pick(live);
      const model = Math.random() < 0.7 ? ROUTING.model : ROUTING.cappedModel;
      const invoke = checkerNow();
      let op: RoutedOp;
      try {
        const res = await fetch(`${replica.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${modelProbe.key}`, "content-type": "application/json" },
          body: JSON.stringify(chatBody(model, { max_tokens: 1 })),
          signal: AbortSignal.timeout(15_000),
        });
        await res.arrayBuffer();
        op = { replica: replica.name, invoke, complete: checkerNow(), status: res.status, model };
        if (res.status === 200) {
          op.deployment = res.headers.get("gatehouse-deployment") ?? undefined;
          op.attempts = Number(res.headers.get("gatehouse-attempts") ?? 0);
        }
      } catch {
        op = { replica: replica.name, invoke, complete: checkerNow(), status: 0, model };
      }
      routedOps.push(op);
      await sleep(300 + Math.random() * 300);
    }
  };

  /** Every replica has applied every event committed so far (cluster.settle() asks the shared server). */
  const settle = async () => {
    const { rows } = await ctx.admin.query<{ id: number }>("SELECT COALESCE(max(id), 0)::int AS id FROM gh_key_events");
    await Promise.all(
      cluster.replicas.map((r) =>
        waitFor(async () => (await r.admin("/debug/coherence")).body.last_applied_event_id >= rows[0]!.id, { timeoutMs: 5_000, what: `${r.name} to catch up` }),
      ),
    );
  };
  const allPg = () => [...poolProxies.values(), listenProxy];
  const ctx: FaultContext = {
    cluster,
    admin: newAdminPool(primaryUrl),
    poolProxies,
    listenProxy,
    redisProxies,
    redisServer: redisServer ?? sentinel!.master,
    snapshot: null,
    adminAvoid: new Set(),
    slowable: profile.slowable ?? names,
    window: null,
    async restartReplica(name, extraEnv = {}) {
      const victim = cluster.replicas.find((r) => r.name === name && alive(r));
      if (victim) {
        victim.child.kill("SIGKILL");
        await victim.exited;
        cluster.replicas.splice(cluster.replicas.indexOf(victim), 1);
        replicaLogs.push(victim);
        // What it charged and had not flushed is gone from the durable ledger.
        spendMayBeForgotten(ctx.window, checkerNow());
      }
      history.replicaStarts.push({ replica: name, at: checkerNow() });
      await cluster.addReplica(name, { ...replicaEnv(name), ...extraEnv });
    },
    async pgFailover(lossy, window) {
      if (!pair) return;
      await standbyReady;
      // Replicas reconnect through their breakers (open for up to 2 s after the outage), then start a new epoch.
      window.tailMs = DEFAULT_CHECKER_OPTIONS.faultTailMs + BREAKER_RESET_MS;
      if (lossy) {
        // From a standby that has everything: what it misses is what commits from now on.
        await pair.waitForStandbyCaughtUp(10_000).catch(() => {});
        pair.walProxy.setMode("blackhole");
        window.lossFrom = checkerNow();
        await hold(1_500);
      }
      // The primary goes away as the replicas see it: their connections cut, new ones refused. A COMMIT already on
      // its way lands or not; the checker's own LISTEN hears every one that landed before the crash.
      for (const p of allPg()) {
        p.setMode("reject");
        p.cutAll();
      }
      await hold(300);
      if (!lossy) await pair.waitForStandbyCaughtUp(10_000);
      clock.detach();
      // A clean switchover stops the primary (every other one with a shutdown checkpoint), a lossy one crashes it.
      if (lossy || pgFailovers++ % 2 === 0) await pair.killPrimary();
      else await pair.stopPrimary();
      if (lossy) window.lossTo = checkerNow();
      // The standby's stream from the dead primary: cut, so that the promotion does not wait for it to time out.
      pair.walProxy.cutAll();
      await pair.promoteStandby();
      gen++;
      primaryUrl = pair.standby.url;
      // Before any replica can reach it: no commit of the new primary goes unheard.
      await clock.follow(primaryUrl, gen);
      const newest = await pair.query("standby", "SELECT COALESCE(max(id), 0)::int8 AS id FROM gh_key_events");
      forkIds[gen] = Number(newest?.[0]?.id ?? 0);
      const oldAdmin = ctx.admin;
      ctx.admin = newAdminPool(primaryUrl);
      void oldAdmin.end().catch(() => {});
      for (const p of allPg()) {
        p.retarget("127.0.0.1", pair.standby.port);
        p.setMode("pass");
      }
      const at = checkerNow();
      switches.push({ gen, at });
      window.end = at;
      // Flushes failed from the cut until now, and a lossy failover lost those its primary took.
      spendMayBeForgotten(window, window.start, at);
      log(`${new Date().toISOString()} postgres generation ${gen} (newest event id ${forkIds[gen]})`);
      standbyReady = pair.rebuildStandby().catch((err: Error) => log(`rebuilding the standby failed: ${err.message}`));
    },
    async redisFailover(window) {
      await redisReplicaReady;
      const replica = redisReplica;
      if (!replica) return;
      // From a replica in sync: what it misses is what is written from now on.
      const offset = (info: string, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(info)?.[1] ?? -1);
      const written = offset(await ctx.redisServer.info("replication"), "master_repl_offset");
      await waitFor(
        async () => {
          const info = await replica.info("replication");
          return /master_link_status:up/.test(info) && offset(info, "slave_repl_offset") >= written;
        },
        { timeoutMs: 10_000, intervalMs: 50, what: "the Redis replica to be in sync" },
      ).catch(() => {});
      replicationProxy.setMode("blackhole");
      await hold(profile.redisLagMs ?? 1_500);
      const crashedAt = checkerNow();
      const old = ctx.redisServer;
      await old.stop();
      await replica.promote();
      replicationProxy.cutAll();
      for (const p of redisProxies.values()) p.retarget("127.0.0.1", replica.port);
      ctx.redisServer = replica;
      ctx.snapshot = null;
      window.end = checkerNow();
      spendMayBeForgotten(window, crashedAt);
      // The next failover's replica, syncing from the new primary through the same proxy.
      replicationProxy.retarget("127.0.0.1", replica.port);
      replicationProxy.setMode("pass");
      redisReplica = null;
      redisReplicaReady = startRedisServer({ replicaOf: { host: "127.0.0.1", port: replicationProxy.port }, extraArgs: FAST_REPLICATION }).then(
        (r) => {
          redisReplica = r;
        },
        (err: Error) => log(`starting a Redis replica failed: ${err.message}`),
      );
    },
    async sentinelFailover(window) {
      if (!sentinel) return;
      await sentinel.ready(15_000);
      await sentinel.failover(
        () => spendMayBeForgotten(window, checkerNow()),
        () => {
          window.end = checkerNow();
        },
      );
      ctx.redisServer = sentinel.master;
    },
  };
  cleanups.unshift(() => ctx.admin.end());

  const snapshots = faults.some((f) => f.name === "Redis restarted from an older snapshot");
  const faultLoop = async () => {
    let i = 0;
    log(`${profile.name}: set up in ${((started - setupStarted) / 1000).toFixed(1)} s`);
    await sleep(1_500);
    while (running() && faults.length > 0) {
      const fault = faults[i++ % faults.length]!;
      if (!scheduleDone && faults.every((f) => faultsInjected[f.name] !== undefined || f === fault)) scheduleDone = true;
      // A snapshot a few seconds old for the "older snapshot" fault: changes made since then will be missing.
      if (snapshots && !ctx.snapshot) ctx.snapshot = { path: await ctx.redisServer.snapshot(), at: Date.now() };
      log(`${new Date().toISOString()} fault: ${fault.name}`);
      faultsInjected[fault.name] = (faultsInjected[fault.name] ?? 0) + 1;
      const window: FaultWindow = {
        name: fault.name,
        start: checkerNow(),
        end: Number.POSITIVE_INFINITY,
        postgresImpaired: !!fault.postgresImpaired,
        partition: !!fault.partition,
        notificationsLost: !!fault.notificationsLost,
        redisImpaired: !!(fault.redisProxies || fault.redisReplica || fault.sentinel),
      };
      history.faults.push(window);
      ctx.window = window;
      try {
        await fault.run(ctx, window);
      } catch (err) {
        log(`fault ${fault.name} failed: ${(err as Error).message}`);
      }
      if (window.end === Number.POSITIVE_INFINITY) window.end = checkerNow();
      ctx.window = null;
      await sleep(1_500);
    }
  };

  try {
    for (const team of TEAMS) {
      // Recorded like every change: creating a team commits an event the checker must find a request for.
      const op = await adminRequest("team_new", cluster.replicas[0]!, "/team/new", { team_id: team }, [`team:${team}`], { team });
      if (op.status !== 200) throw new Error(`creating team ${team} failed: ${op.status}`);
    }
    for (let i = 0; i < profile.keys; i++) await generate(cluster.replicas[i % cluster.replicas.length]!);
    // The probe key of the database model: recorded like every key, never changed by the run.
    const probeOp = (await adminRequest("generate", cluster.replicas[0]!, "/key/generate", {}, [], { models: [] })) as AdminOp & { plaintext?: string };
    if (probeOp.status !== 200 || !probeOp.plaintext) throw new Error(`generating the probe key failed: ${probeOp.status}`);
    modelProbe = { key: probeOp.plaintext, token: probeOp.newToken! };
    if ((profile.budgetKeys ?? 0) > 0) {
      // What one priced request costs (not recorded: it changes nothing the checker follows).
      const res = await call(cluster.replicas[0]!, "/v1/chat/completions", modelProbe.key, chatBody(DEFAULT_CHECKER_OPTIONS.pricedModel, { max_tokens: 1 }));
      if (res.status !== 200) throw new Error(`a priced request answered ${res.status}`);
      pricedCost = costOf(res.body.usage);
    }
    await settle();
    // The flapping deployment's id, as answers name it.
    const flappyId = routingUpstream
      ? ((await cluster.replicas[0]!.admin("/debug/routing")).body.deployments as Array<{ id: string; deployment: string }>).find((d) => d.deployment === "openai/flappy")!.id
      : "";
    routingUpstream?.flap();
    canary.start();
    await Promise.all([
      faultLoop(),
      ...Array.from({ length: profile.adminWorkers }, adminWorker),
      ...Array.from({ length: profile.authWorkers }, authWorker),
      ...Array.from({ length: (profile.budgetKeys ?? 0) > 0 ? (profile.budgetClients ?? 2) : 0 }, budgetWorker),
      ...Array.from({ length: profile.routingClients ?? 0 }, routingWorker),
    ]);
    stopping = true;
    await Promise.all(inFlight);
    await canary.stop();
    for (const p of [...poolProxies.values(), listenProxy, ...redisProxies.values()]) {
      p.setMode("pass");
      p.setLatency(0);
    }
    // Notifications of the last commits: on their way still.
    await sleep(300);

    // The surviving database's events, each filed under the generation that committed it (ids are issued again
    // after a promotion: an id above the newest a promoted standby held was issued by it or a later primary).
    const admin = ctx.admin;
    const { rows } = await admin.query<{ id: string; kind: string; tokens: string[]; at: number }>(
      "SELECT id, kind, tokens, (extract(epoch FROM created_at) * 1000)::float8 AS at FROM gh_key_events ORDER BY id",
    );
    const genOf = (id: number) => {
      let g = 0;
      for (let i = 1; i < forkIds.length; i++) if (id > forkIds[i]!) g = i;
      return g;
    };
    const events: CommittedEvent[] = rows.map((r) => {
      const id = Number(r.id);
      const g = genOf(id);
      const heard = clock.heard.get(CommitClock.key(g, id));
      return { id, gen: g, kind: r.kind, tokens: r.tokens, writtenAt: r.at, at: commitTime(r.at, heard?.at), ...(heard ? { committedBy: heard.at } : {}) };
    });
    // ...and the changes heard to commit on a primary, above the newest id the standby promoted after it held: lost.
    for (const h of clock.heard.values()) {
      if (h.gen >= gen || h.id <= forkIds[h.gen + 1]!) continue;
      events.push({ id: h.id, gen: h.gen, kind: h.kind, tokens: h.tokens ?? [], writtenAt: h.writtenAt, at: commitTime(h.writtenAt, h.at), committedBy: h.at, lost: true });
    }
    const { result, model } = checkHistory(
      history.ops,
      events,
      history.faults,
      { ...DEFAULT_CHECKER_OPTIONS, budgetClients: profile.budgetClients ?? 2 },
      history.replicaStarts,
      switches,
    );
    const routingCheck = routingUpstream
      ? checkRouting({ ops: routedOps, calls: routingUpstream.calls, faults: history.faults, flappyId, tailMs: DEFAULT_CHECKER_OPTIONS.faultTailMs })
      : null;
    if (routingCheck) result.violations.push(...routingCheck.violations);
    // For a closer look at a run: the whole history and the events, as JSON.
    // The Sentinel segment writes next to it (<file>-sentinel.json).
    const dump = process.env.HISTORY_DUMP && (sentinelMode ? process.env.HISTORY_DUMP.replace(/(\.json)?$/, "-sentinel.json") : process.env.HISTORY_DUMP);
    if (dump) writeFileSync(dump, JSON.stringify({ ops: history.ops, events, faults: history.faults, switches, replicaStarts: history.replicaStarts }));

    // The database holds exactly the keys the model says, with the model's token, block and models.
    let finalMismatches = 0;
    const db = await admin.query<{ key_id: string; token: string; blocked: boolean; models: string[] }>("SELECT key_id, token, blocked, models FROM gh_keys");
    const rowsById = new Map(db.rows.map((r) => [r.key_id, r]));
    for (const key of model.keys.values()) {
      const last = key.changes.at(-1)!;
      const row = rowsById.get(key.keyId);
      const problem = last.deleted
        ? row && `key ${key.keyId} is still in the database, but a delete of it was acknowledged`
        : !row
          ? `key ${key.keyId} is gone from the database, but no acknowledged delete explains it`
          : row.token !== key.current
            ? `key ${key.keyId} has token ${row.token.slice(0, 8)}…, the model ${key.current.slice(0, 8)}…`
            : row.blocked !== last.blocked || JSON.stringify(row.models) !== JSON.stringify(last.models)
              ? `key ${key.keyId} is blocked=${row.blocked} models=${JSON.stringify(row.models)}, the model blocked=${last.blocked} models=${JSON.stringify(last.models)}`
              : null;
      if (problem) {
        finalMismatches++;
        result.violations.push({ kind: "final state", message: problem, at: checkerNow(), window: [] });
      }
    }
    const finalState = (message: string) => {
      finalMismatches++;
      result.violations.push({ kind: "final state", message, at: checkerNow(), window: [] });
    };
    // ...the database model's deployments the model says (a /model/new whose answer was lost counts too),
    const deployments = (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM gh_models WHERE model_name = $1", [DB_MODEL])).rows[0]!.n;
    const modelled = model.dbModel.at(-1)!.ids.length;
    if (deployments !== modelled) finalState(`${DB_MODEL} has ${deployments} deployments in the database, the model ${modelled}`);
    // ...and each live team's and user's model list.
    for (const [what, sql, timeline] of [
      ["team", "SELECT team_id AS id, models FROM gh_teams WHERE deleted_at IS NULL", model.teams],
      ["user", "SELECT user_id AS id, models FROM gh_users WHERE deleted_at IS NULL", model.users],
    ] as const) {
      for (const row of (await admin.query<{ id: string; models: string[] }>(sql)).rows) {
        const last = timeline.get(row.id)?.at(-1)?.models ?? [];
        if (JSON.stringify(row.models) !== JSON.stringify(last)) finalState(`${what} ${row.id} has models ${JSON.stringify(row.models)}, the model ${JSON.stringify(last)}`);
      }
    }
    return {
      profile: profile.name,
      seconds: Math.round((Date.now() - started) / 1000),
      ops: history.ops.length,
      faults_injected: faultsInjected,
      check: result,
      final_state_mismatches: finalMismatches,
      violations: result.violations,
      first_violation_after_ops: result.violations.length === 0 ? null : history.ops.filter((o) => o.invoke <= result.violations[0]!.at).length,
      pg_generations: gen,
      slow_checker_proxy: canary.summary(history.faults, DEFAULT_CHECKER_OPTIONS.faultTailMs),
      routing: routingCheck?.summary ?? null,
    };
  } finally {
    stopping = true;
    for (const cleanup of cleanups) await cleanup().catch((err: Error) => log(`cleanup: ${err.message}`));
  }
}

const percentile = (xs: number[], p: number) => {
  const v = xs.filter((x) => x >= 0).sort((a, b) => a - b);
  return v.length === 0 ? 0 : v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))]!;
};

/** The report table (the README shows the long profile's). */
export function formatReport(r: RunReport): string {
  const c = r.check;
  // No spread: a long run has hundreds of thousands of answers.
  const stale = (xs: number[]) => `${Math.round(percentile(xs, 50))} / ${Math.round(percentile(xs, 99))} / ${Math.round(xs.reduce((a, b) => Math.max(a, b), 0))} ms`;
  const rows: Array<[string, string | number]> = [
    ["profile", `${r.profile} (${r.seconds} s)`],
    ["operations recorded", r.ops],
    ...Object.entries(c.opsByKind)
      .sort()
      .map(([k, n]) => [`  ${k}`, n] as [string, number]),
    ["faults injected", `${Object.values(r.faults_injected).reduce((a, b) => a + b, 0)} (${Object.keys(r.faults_injected).length} kinds)`],
    ...Object.entries(r.faults_injected).map(([k, n]) => [`  ${k}`, n] as [string, number]),
    ["answers checked", c.answersChecked],
    [
      "answers by status",
      Object.entries(c.answersByStatus)
        .map(([s, n]) => `${s}: ${n}`)
        .join(", "),
    ],
    ["rotations refused as conflicting (409, retry)", c.rotationConflicts],
    ["Postgres promotions; changes lost with a primary", `${r.pg_generations}; ${c.lostChanges}`],
    [
      "budget keys: most spent (of the budget; the bound allowed)",
      c.budgets.length === 0
        ? "none"
        : (() => {
            const worst = c.budgets.reduce((a, b) => (b.spent / b.budget > a.spent / a.budget ? b : a));
            return `${c.budgets.length} keys; ${Math.round((worst.spent / worst.budget) * 100)} % (${Math.round((worst.allowed / worst.budget) * 100)} %)`;
          })(),
    ],
    ["staleness p50 / p99 / max, normal periods", stale(c.staleness.normal)],
    ["staleness p50 / p99 / max, fault periods", stale(c.staleness.fault)],
    [
      "checker's own Postgres proxy slow (> 400 ms) outside faults: windows; total; longest",
      `${r.slow_checker_proxy.windows}; ${(r.slow_checker_proxy.totalMs / 1000).toFixed(1)} s; ${r.slow_checker_proxy.longestMs} ms`,
    ],
    [
      "routing: requests; dead-deployment calls; cooldowns (answers checked against them); capped deployment's busiest minute (bound); most attempts",
      r.routing
        ? `${r.routing.requests}; ${r.routing.deadCalls}; ${r.routing.cooldowns} (${r.routing.checkedAgainstCooldowns}); ${r.routing.cappedMostInAMinute} (${r.routing.cappedAllowed}); ${r.routing.mostAttempts}`
        : "none",
    ],
    ["final-state mismatches", r.final_state_mismatches],
    ["violations", r.violations.length],
  ];
  return ["| what | value |", "|---|---|", ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join("\n");
}

/** A violation as a bug report: what, when, and the requests on that key around it. */
export function formatViolation(v: Violation): string {
  return [`${v.kind}: ${v.message}`, ...v.window.map((l) => `    ${l}`)].join("\n");
}
