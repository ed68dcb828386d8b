import { setTimeout as sleep } from "node:timers/promises";
import { startRedisServer } from "../../../test/helpers/redis-server.js";
import { waitFor } from "../../../test/helpers/services.js";
import { DEFAULT_CHECKER_OPTIONS } from "./checker.js";
import { checkerNow, type FaultWindow } from "./history.js";
import { alive, FAST_REPLICATION, newAdminPool, type RunContext } from "./run-setup.js";

/**
 * The faults that replace a part of the run — a replica restarted, a Postgres primary or a Redis primary failed
 * over — and so change the run's shared state (RunContext): the proxies' targets, the checker's own connections,
 * the Postgres generation, the next standby. Each marks the spend a re-seeded ledger may miss.
 */

// The replicas' Postgres breaker stays open this long after failures (src/faults/breaker.ts resetTimeoutMs).
const BREAKER_RESET_MS = 2_000;

/** Charges a live ledger re-seeded from Postgres may miss from now on: those not flushed yet (rules/budgets.ts). */
export function spendMayBeForgotten(window: FaultWindow | null, from: number, to = from): void {
  if (!window) return;
  window.spendMayBeForgotten = [...(window.spendMayBeForgotten ?? []), { from, to }];
}

/** The replica SIGKILLed (if it runs) and started again, its caches empty. */
export async function restartReplica(ctx: RunContext, name: string, extraEnv: Record<string, string> = {}): Promise<void> {
  const { cluster } = ctx;
  const victim = cluster.replicas.find((r) => r.name === name && alive(r));
  if (victim) {
    victim.child.kill("SIGKILL");
    await victim.exited;
    cluster.replicas.splice(cluster.replicas.indexOf(victim), 1);
    ctx.killedReplicas.push(victim);
    // What it charged and had not flushed is gone from the durable ledger.
    spendMayBeForgotten(ctx.window, checkerNow());
  }
  ctx.history.replicaStarts.push({ replica: name, at: checkerNow() });
  await cluster.addReplica(name, { ...ctx.replicaEnv(name), ...extraEnv });
}

/** The standby promoted, every Postgres proxy moved to it, a new standby built; `lossy`: WAL withheld first. */
export async function pgFailover(ctx: RunContext, lossy: boolean, window: FaultWindow): Promise<void> {
  const { postgres } = ctx;
  const pair = postgres.pair;
  if (!pair) return;
  await postgres.standbyReady;
  const proxies = [...ctx.proxies.pool.values(), ctx.proxies.listen];
  // Replicas reconnect through their breakers (open for up to 2 s after the outage), then start a new epoch.
  window.tailMs = DEFAULT_CHECKER_OPTIONS.faultTailMs + BREAKER_RESET_MS;
  if (lossy) {
    // From a standby that has everything: what it misses is what commits from now on.
    await pair.waitForStandbyCaughtUp(10_000).catch(() => {});
    pair.walProxy.setMode("blackhole");
    window.lossFrom = checkerNow();
    await sleep(1_500);
  }
  // The primary goes away as the replicas see it: their connections cut, new ones refused. A COMMIT already on
  // its way lands or not; the checker's own LISTEN hears every one that landed before the crash.
  for (const p of proxies) {
    p.setMode("reject");
    p.cutAll();
  }
  await sleep(300);
  if (!lossy) await pair.waitForStandbyCaughtUp(10_000);
  ctx.clock.detach();
  // A clean switchover stops the primary (every other one with a shutdown checkpoint), a lossy one crashes it.
  if (lossy || postgres.failovers++ % 2 === 0) await pair.killPrimary();
  else await pair.stopPrimary();
  if (lossy) window.lossTo = checkerNow();
  // The standby's stream from the dead primary: cut, so that the promotion does not wait for it to time out.
  pair.walProxy.cutAll();
  await pair.promoteStandby();
  const gen = ++postgres.gen;
  postgres.primaryUrl = pair.standby.url;
  // Before any replica can reach it: no commit of the new primary goes unheard.
  await ctx.clock.follow(postgres.primaryUrl, gen);
  const newest = await pair.query("standby", "SELECT COALESCE(max(id), 0)::int8 AS id FROM gh_key_events");
  postgres.forkIds[gen] = Number(newest?.[0]?.id ?? 0);
  const oldAdmin = postgres.admin;
  postgres.admin = newAdminPool(postgres.primaryUrl);
  void oldAdmin.end().catch(() => {});
  for (const p of proxies) {
    p.retarget("127.0.0.1", pair.standby.port);
    p.setMode("pass");
  }
  const at = checkerNow();
  postgres.switches.push({ gen, at });
  window.end = at;
  // Flushes failed from the cut until now, and a lossy failover lost those its primary took.
  spendMayBeForgotten(window, window.start, at);
  ctx.log(`${new Date().toISOString()} postgres generation ${gen} (newest event id ${postgres.forkIds[gen]})`);
  postgres.standbyReady = pair.rebuildStandby().catch((err: Error) => ctx.log(`rebuilding the standby failed: ${err.message}`));
}

/** The Redis replica made to lag, the primary killed, the replica promoted, every Redis proxy moved to it. */
export async function redisFailover(ctx: RunContext, window: FaultWindow): Promise<void> {
  const { redis, proxies } = ctx;
  await redis.replicaReady;
  const replica = redis.replica;
  if (!replica) return;
  // From a replica in sync: what it misses is what is written from now on.
  const offset = (info: string, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(info)?.[1] ?? -1);
  const written = offset(await redis.server.info("replication"), "master_repl_offset");
  await waitFor(
    async () => {
      const info = await replica.info("replication");
      return /master_link_status:up/.test(info) && offset(info, "slave_repl_offset") >= written;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: "the Redis replica to be in sync" },
  ).catch(() => {});
  proxies.replication.setMode("blackhole");
  await sleep(ctx.profile.redisLagMs ?? 1_500);
  const crashedAt = checkerNow();
  await redis.server.stop();
  await replica.promote();
  proxies.replication.cutAll();
  for (const p of proxies.redis.values()) p.retarget("127.0.0.1", replica.port);
  redis.server = replica;
  redis.snapshot = null;
  window.end = checkerNow();
  spendMayBeForgotten(window, crashedAt);
  // The next failover's replica, syncing from the new primary through the same proxy.
  proxies.replication.retarget("127.0.0.1", replica.port);
  proxies.replication.setMode("pass");
  redis.replica = null;
  redis.replicaReady = startRedisServer({ replicaOf: { host: "127.0.0.1", port: proxies.replication.port }, extraArgs: FAST_REPLICATION }).then(
    (r) => {
      redis.replica = r;
    },
    (err: Error) => ctx.log(`starting a Redis replica failed: ${err.message}`),
  );
}

/** The Sentinels' master SIGKILLed; the Sentinels promote its replica, which the replicas find through them. */
export async function sentinelFailover(ctx: RunContext, window: FaultWindow): Promise<void> {
  const { sentinel } = ctx.redis;
  if (!sentinel) return;
  await sentinel.ready(15_000);
  await sentinel.failover(
    () => spendMayBeForgotten(window, checkerNow()),
    () => {
      window.end = checkerNow();
    },
  );
  ctx.redis.server = sentinel.master;
}
