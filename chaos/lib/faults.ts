import type pg from "pg";
import type { Cluster, Replica } from "../../test/helpers/cluster.js";
import type { TcpProxy } from "../../test/support/tcp-proxy.mjs";
import type { RedisServer } from "../../test/helpers/redis-server.js";

/**
 * The fault injector: one fault at a time, each healed before the next. The windows in which Postgres was
 * unreachable are recorded, for the "no 5xx for cached keys while Postgres was down" check.
 */
export interface FaultContext {
  cluster: Cluster;
  admin: pg.Pool;
  pgProxy: TcpProxy;
  redisProxy: TcpProxy;
  redisServer: RedisServer;
  /** Kills a replica in the middle of a rotation it is serving, then starts a replacement. */
  killMidRotation: () => Promise<void>;
}

export interface Fault {
  name: string;
  /** Postgres unreachable for the replicas while this fault holds. */
  pgDown?: boolean;
  /** Postgres and Redis both unreachable: replicas can learn of no change at all (fail static). */
  partition?: boolean;
  run(ctx: FaultContext): Promise<void>;
}

const hold = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function terminate(ctx: FaultContext, onlyListeners: boolean): Promise<void> {
  await ctx.admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND ($1::boolean IS FALSE OR application_name LIKE 'gatehouse-listen:%')`,
    [onlyListeners],
  );
}

export const FAULTS: Fault[] = [
  { name: "pg_terminate_backend: every gateway connection", run: (ctx) => terminate(ctx, false) },
  { name: "pg_terminate_backend: LISTEN connections only", run: (ctx) => terminate(ctx, true) },
  { name: "Postgres proxy: cut all connections", run: async (ctx) => ctx.pgProxy.cutAll() },
  {
    name: "Postgres proxy: blackhole 3 s",
    pgDown: true,
    run: async (ctx) => {
      ctx.pgProxy.setMode("blackhole");
      ctx.pgProxy.cutAll();
      await hold(3_000);
      ctx.pgProxy.setMode("pass");
      ctx.pgProxy.cutAll(); // sockets opened during the blackhole are stuck mid-handshake
    },
  },
  {
    name: "Postgres proxy: +40 ms latency for 3 s",
    run: async (ctx) => {
      ctx.pgProxy.setLatency(40);
      await hold(3_000);
      ctx.pgProxy.setLatency(0);
    },
  },
  { name: "kill a replica mid-rotation (SIGKILL)", run: (ctx) => ctx.killMidRotation() },
  { name: "connection dies during COMMIT (after the server got it)", run: async (ctx) => void (await Promise.race([ctx.pgProxy.cutOnce("COMMIT", { forward: true }), hold(3_000)])) },
  { name: "connection dies during COMMIT (before the server got it)", run: async (ctx) => void (await Promise.race([ctx.pgProxy.cutOnce("COMMIT", { forward: false }), hold(3_000)])) },
  { name: "Redis proxy: cut all connections", run: async (ctx) => ctx.redisProxy.cutAll() },
  {
    name: "Redis proxy: blackhole 3 s",
    run: async (ctx) => {
      ctx.redisProxy.setMode("blackhole");
      ctx.redisProxy.cutAll();
      await hold(3_000);
      ctx.redisProxy.setMode("pass");
      ctx.redisProxy.cutAll();
    },
  },
  { name: "restart Redis", run: (ctx) => ctx.redisServer.restart(500) },
  {
    name: "Postgres and Redis both blackholed 5 s (partition)",
    pgDown: true,
    partition: true,
    run: async (ctx) => {
      for (const proxy of [ctx.pgProxy, ctx.redisProxy]) {
        proxy.setMode("blackhole");
        proxy.cutAll();
      }
      await hold(5_000);
      for (const proxy of [ctx.pgProxy, ctx.redisProxy]) {
        proxy.setMode("pass");
        proxy.cutAll();
      }
    },
  },
];

export function aliveReplicas(cluster: Cluster): Replica[] {
  return cluster.replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);
}
