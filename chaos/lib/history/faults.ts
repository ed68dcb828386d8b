import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CHECKER_APPLICATION_NAME } from "./commit-clock.js";
import { pgFailover, redisFailover, restartReplica, sentinelFailover, spendMayBeForgotten } from "./failovers.js";
import { checkerNow, type FaultWindow } from "./history.js";
import { pick } from "./pick.js";
import type { Profile } from "./profiles.js";
import { alive, type RunContext } from "./run-setup.js";

/**
 * The faults a run fires, one at a time, while its clients run: one entry of FAULTS per kind, found by its name.
 * A new kind of fault is one entry — what it does, and what it impairs (which decides the bound and the answers
 * the checker allows during its window and tail).
 */
export interface Fault {
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
  /** Needs a Redis snapshot a few seconds old: one is taken before each fault while the schedule has this one. */
  snapshot?: boolean;
  /** May end its window itself (`window.end`) before it returns: what follows (a new standby built) is no fault. */
  run(ctx: RunContext, window: FaultWindow): Promise<void>;
}

export const PG_SWITCHOVER = "postgres switchover (clean)";
export const PG_FAILOVER_LOSSY = "postgres failover losing commits";
export const REDIS_FAILOVER = "redis failover to a lagging replica";
export const SENTINEL_FAILOVER = "sentinel failover";

const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

const hold = (ms: number) => sleep(ms);
const allPgProxies = (ctx: RunContext) => [...ctx.proxies.pool.values(), ctx.proxies.listen];
// Never the checker's own LISTEN connection: it dates every change (commit-clock.ts).
const terminate = (ctx: RunContext, listenersOnly: boolean) =>
  ctx.postgres.admin.query(
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
      ctx.proxies.listen.setMode("blackhole");
      await hold(3_000);
      ctx.proxies.listen.setMode("pass");
      ctx.proxies.listen.cutAll();
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
      const pool = ctx.proxies.pool.get(name)!;
      const redis = ctx.proxies.redis.get(name)!;
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
      const proxy = pick([...ctx.proxies.pool.values()]);
      await Promise.race([proxy.cutOnce("COMMIT", { forward: Math.random() < 0.5 }), hold(3_000)]);
    },
  },
  { name: PG_SWITCHOVER, postgresImpaired: true, notificationsLost: true, pgPair: true, run: (ctx, w) => pgFailover(ctx, false, w) },
  { name: PG_FAILOVER_LOSSY, postgresImpaired: true, notificationsLost: true, pgPair: true, run: (ctx, w) => pgFailover(ctx, true, w) },
  { name: REDIS_FAILOVER, redisReplica: true, redisProxies: true, run: (ctx, w) => redisFailover(ctx, w) },
  { name: SENTINEL_FAILOVER, sentinel: true, run: (ctx, w) => sentinelFailover(ctx, w) },
  { name: "Redis paused 3 s (SIGSTOP)", redisProxies: true, run: (ctx) => ctx.redis.server.pause(3_000) },
  {
    name: "Redis restarted empty",
    redisProxies: true,
    run: (ctx, w) => {
      spendMayBeForgotten(w, checkerNow());
      return ctx.redis.server.restart(300);
    },
  },
  {
    name: "Redis restarted from an older snapshot",
    redisProxies: true,
    snapshot: true,
    run: async (ctx, w) => {
      if (!ctx.redis.snapshot) return;
      spendMayBeForgotten(w, checkerNow());
      await ctx.redis.server.restartFrom(ctx.redis.snapshot.path, 300);
      ctx.redis.snapshot = null;
    },
  },
  {
    name: "Redis connections cut (proxy)",
    redisProxies: true,
    run: async (ctx) => {
      for (const p of ctx.proxies.redis.values()) p.cutAll();
    },
  },
  {
    name: "a replica SIGKILLed and restarted",
    notificationsLost: true,
    run: async (ctx) => restartReplica(ctx, pick(ctx.cluster.replicas.filter(alive)).name),
  },
  {
    name: "a replica restarted under a wall clock shifted by ±20 s",
    notificationsLost: true,
    run: async (ctx) => {
      if (!existsSync(LIBFAKETIME)) return;
      const shift = Math.random() < 0.5 ? "+20s" : "-20s";
      await restartReplica(ctx, "C", { LD_PRELOAD: LIBFAKETIME, FAKETIME: shift, FAKETIME_DONT_FAKE_MONOTONIC: "1" });
    },
  },
  {
    name: "Postgres and Redis both blackholed 4 s (partition)",
    postgresImpaired: true,
    redisProxies: true,
    partition: true,
    notificationsLost: true,
    run: async (ctx) => {
      const proxies = [...allPgProxies(ctx), ...ctx.proxies.redis.values()];
      for (const p of proxies) p.setMode("blackhole");
      for (const p of proxies) p.cutAll();
      await hold(4_000);
      for (const p of proxies) p.setMode("pass");
      for (const p of proxies) p.cutAll();
    },
  },
];

const faultNamed = (name: string): Fault => FAULTS.find((f) => f.name === name)!;

/** The faults a profile fires, in the order it fires them (the interleaved ones after every other fault). */
export function faultSchedule(profile: Profile): Fault[] {
  const sentinel = profile.redis === "sentinel";
  const eligible = FAULTS.filter((f) => (sentinel ? !f.redisProxies : !f.sentinel));
  const chosen = profile.faults ? eligible.filter((f) => profile.faults!.includes(f.name)) : eligible;
  const interleave = (profile.interleave ?? []).map(faultNamed);
  if (interleave.length === 0) return chosen;
  const base = chosen.filter((f) => !interleave.includes(f));
  const every = profile.interleaveEvery ?? 1;
  // Over as many cycles of the base faults as it takes to pair each position with each interleaved one.
  const cycles = Math.max(1, interleave.length * every);
  return Array.from({ length: cycles }, () => base)
    .flat()
    .flatMap((f, i) => ((i + 1) % every === 0 ? [f, interleave[Math.floor(i / every) % interleave.length]!] : [f]));
}

/**
 * Fires the schedule's faults in turn, 1.5 s apart, each recorded as a window (what it impaired, from its start to
 * its end) while the run goes on.
 */
export async function runFaults(ctx: RunContext): Promise<void> {
  const { schedule, control, history, faultsInjected } = ctx;
  const snapshots = schedule.some((f) => f.snapshot);
  let i = 0;
  await sleep(1_500);
  while (control.running() && schedule.length > 0) {
    const fault = schedule[i++ % schedule.length]!;
    if (!control.scheduleDone && schedule.every((f) => faultsInjected[f.name] !== undefined || f === fault)) control.scheduleDone = true;
    // A snapshot a few seconds old for the "older snapshot" fault: changes made since then will be missing.
    if (snapshots && !ctx.redis.snapshot) ctx.redis.snapshot = { path: await ctx.redis.server.snapshot(), at: Date.now() };
    ctx.log(`${new Date().toISOString()} fault: ${fault.name}`);
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
      ctx.log(`fault ${fault.name} failed: ${(err as Error).message}`);
    }
    if (window.end === Number.POSITIVE_INFINITY) window.end = checkerNow();
    ctx.window = null;
    await sleep(1_500);
  }
}
