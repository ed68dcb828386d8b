import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { startCluster, generateKey, type Cluster, type Replica } from "./helpers/cluster.js";
import { DEFAULT_TEST_CONFIG } from "./helpers/gateway-fixture.js";
import { api, chatBody } from "./helpers/http.js";
import { costOf, pricedModel } from "./helpers/prices.js";
import { startRedisServer, type RedisServer } from "./helpers/redis-server.js";
import { waitFor } from "./helpers/services.js";
import { startPgPair, type PgPair } from "./support/pg-cluster.mjs";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

/**
 * The surviving database is the truth, whatever failed over (docs/coherence.md, "Engine failover"). Three real
 * replica processes reach Postgres through one TCP proxy, as through a virtual IP or a DNS name that an operator
 * or Patroni moves to the promoted standby; Redis likewise.
 */

// The hard bound of a revocation when notifications are lost (docs/coherence.md #2).
const HARD_BOUND_MS = 2_000;

/** Every replica answers `expected` for `key` within the hard bound, counted from `since`. */
async function allAnswer(replicas: Replica[], key: string, expected: number, since: number, what: string) {
  await Promise.all(
    replicas.map((r) =>
      waitFor(async () => (await r.chat(key)) === expected, {
        timeoutMs: Math.max(1, since + HARD_BOUND_MS - Date.now()),
        intervalMs: 50,
        what: `${r.name}: ${what} (${expected})`,
      }),
    ),
  );
}

/**
 * Blocks `key` through `on`, retrying until a replica reaches the new primary and answers 200 (503 meanwhile);
 * returns when the 200 came.
 */
async function blockOnceAnswered(on: Replica, key: string): Promise<number> {
  let answeredAt = 0;
  await waitFor(
    async () => {
      const res = await on.admin("/key/block", { key });
      answeredAt = Date.now();
      return res.status === 200;
    },
    { timeoutMs: 15_000, intervalMs: 100, what: "a block on the promoted standby to answer 200" },
  );
  return answeredAt;
}

/** Authenticates `key` on every replica in turn until stopped; returns every status seen. */
function keepAuthenticating(replicas: Replica[], key: string) {
  const statuses: number[] = [];
  let running = true;
  const loops = replicas.map(async (r) => {
    while (running) statuses.push(await r.chat(key).catch(() => 0));
  });
  return {
    statuses,
    async stop() {
      running = false;
      await Promise.all(loops);
      return statuses;
    },
  };
}

describe("a Postgres standby promoted after missing the last commits", () => {
  let pair: PgPair;
  let pgProxy: TcpProxy;
  let cluster: Cluster;
  let replicas: Replica[];

  beforeAll(async () => {
    pair = await startPgPair();
    pgProxy = await startTcpProxy("127.0.0.1", pair.primary.port);
    const url = viaProxy(pair.primary.url, pgProxy);
    cluster = await startCluster({ size: 2, databaseUrl: () => url, listenUrl: () => url });
    // C names both servers itself, the standby first, as libpq writes it: it finds the writable one, before and
    // after the promotion, with no address moved for it.
    const multiHost = `postgres://postgres@127.0.0.1:${pair.standby.port},127.0.0.1:${pair.primary.port}/${pair.database}?target_session_attrs=read-write`;
    await cluster.addReplica("C", { DATABASE_URL: multiHost, DATABASE_LISTEN_URL: multiHost });
    replicas = cluster.replicas;
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
    await pgProxy?.close();
    await pair?.stop();
  });

  it("every replica follows the surviving database within the hard bound: its changes hold, the lost history is never served", async () => {
    const [A, B, C] = replicas as [Replica, Replica, Replica];
    // Before the standby falls behind: keys both databases will have.
    const k1 = await generateKey(A);
    const k2 = await generateKey(A);
    const k3 = await generateKey(A);
    await pair.waitForStandbyCaughtUp();

    // The standby stops receiving WAL: what commits now exists only on the primary.
    pair.walProxy.setMode("blackhole");
    expect((await A.admin("/key/block", { key: k2.key })).status).toBe(200);
    const k4 = await generateKey(B); // a key of the lost history only
    // Push event ids (and key versions) well past what the standby's sequences will hand out again.
    for (let i = 0; i < 40; i++) await generateKey(C);
    const lostEventsThrough = Number((await pair.query("primary", "SELECT max(id)::int8 AS id FROM gh_key_events"))![0]!.id);
    await Promise.all(
      replicas.map((r) =>
        waitFor(async () => (await r.admin("/debug/coherence")).body.last_applied_event_id >= lostEventsThrough, { what: `${r.name} to apply the lost history` }),
      ),
    );
    // Every replica holds each key of both histories in L1 and L2 as the lost history says.
    for (const r of replicas) {
      expect(await r.chat(k1.key)).toBe(200);
      expect(await r.chat(k2.key)).toBe(401);
      expect(await r.chat(k3.key)).toBe(200);
      expect(await r.chat(k4.key)).toBe(200);
    }

    // The primary dies; the standby is promoted; the address moves to it. Requests keep coming meanwhile.
    const load = keepAuthenticating(replicas, k1.key);
    await pair.killPrimary();
    await pair.promoteStandby();
    pgProxy.retarget("127.0.0.1", pair.standby.port);
    const newest = Number((await pair.query("standby", "SELECT max(id)::int8 AS id FROM gh_key_events"))![0]!.id);
    expect(newest).toBeLessThan(lostEventsThrough);

    // A change made after the switch, on the survivor: answered 200 once a replica reaches the new primary.
    const blockedAt = await blockOnceAnswered(A, k1.key);
    await allAnswer(replicas, k1.key, 401, blockedAt, "a key blocked after the failover is refused");
    // Until the block, k1 was valid in both histories: never refused before it (a 503 while nobody knows is allowed).
    const beforeBlock = await load.stop();
    expect(beforeBlock.slice(0, beforeBlock.indexOf(401) >= 0 ? beforeBlock.indexOf(401) : undefined).filter((s) => s !== 200 && s !== 503)).toEqual([]);
    const rotated = await A.admin("/key/regenerate", { key: k3.key, grace_period: "0s" });
    expect(rotated.status, rotated.text).toBe(200);
    const rotatedAt = Date.now();
    await allAnswer(replicas, k3.key, 401, rotatedAt, "the old token of a key rotated after the failover is refused");
    await allAnswer(replicas, rotated.body.key, 200, rotatedAt, "its new token is accepted");
    // The lost history: its key does not exist, its block never happened.
    const sinceSwitch = Date.now();
    await allAnswer(replicas, k4.key, 401, sinceSwitch, "a key of the lost history only is refused");
    await allAnswer(replicas, k2.key, 200, sinceSwitch, "a key whose block was lost is accepted, as the survivor says");
    expect((await B.admin("/key/delete", { keys: [k4.key] })).status).toBe(404);
    // Each replica began a new epoch (the mechanism behind the answers above), by its next catch-up at the latest.
    for (const r of replicas) {
      let status: Record<string, unknown> = {};
      await waitFor(
        async () => {
          status = (await r.admin("/debug/coherence")).body;
          return (status.epochs as number) >= 1;
        },
        { timeoutMs: HARD_BOUND_MS, intervalMs: 50, what: `${r.name} to begin a new epoch` },
      ).catch((err: Error) => {
        // Its state and its warnings say which step it missed.
        const warnings = r.output.filter((line) => /"level":(40|50)/.test(line)).slice(-15);
        throw new Error(`${err.message}: ${JSON.stringify(status)}\n${warnings.join("\n")}`);
      });
    }

    // A replica started afterwards (empty L1, the same Redis) agrees.
    await C.stop("SIGKILL");
    const D = await cluster.addReplica("D");
    expect(await D.chat(k1.key)).toBe(401);
    expect(await D.chat(k2.key)).toBe(200);
    expect(await D.chat(k3.key)).toBe(401);
    expect(await D.chat(rotated.body.key)).toBe(200);
    expect(await D.chat(k4.key)).toBe(401);
  }, 120_000);
});

describe("a clean Postgres switchover under load", () => {
  let pair: PgPair;
  let pgProxy: TcpProxy;
  let cluster: Cluster;

  beforeAll(async () => {
    pair = await startPgPair();
    pgProxy = await startTcpProxy("127.0.0.1", pair.primary.port);
    const url = viaProxy(pair.primary.url, pgProxy);
    cluster = await startCluster({ databaseUrl: () => url, listenUrl: () => url });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
    await pgProxy?.close();
    await pair?.stop();
  });

  it("nothing acknowledged is lost: a grace granted before the switch holds, changes after it hold everywhere, a valid key is never refused", async () => {
    const replicas = cluster.replicas;
    const [A, B] = replicas as [Replica, Replica, Replica];
    const steady = await generateKey(A);
    const toBlock = await generateKey(A);
    const rotatedBefore = await generateKey(A);
    const inGrace = await A.admin("/key/regenerate", { key: rotatedBefore.key, grace_period: "1h" });
    expect(inGrace.status).toBe(200);
    for (const r of replicas) for (const key of [steady.key, rotatedBefore.key, inGrace.body.key]) expect(await r.chat(key)).toBe(200);

    const load = keepAuthenticating(replicas, steady.key);
    // Synchronous replication's promise, made by hand: the standby has every commit before the primary goes.
    await pair.waitForStandbyCaughtUp();
    await pair.killPrimary();
    await pair.promoteStandby();
    pgProxy.retarget("127.0.0.1", pair.standby.port);

    const blockedAt = await blockOnceAnswered(B, toBlock.key);
    await allAnswer(replicas, toBlock.key, 401, blockedAt, "a key blocked after the switchover is refused");
    const since = Date.now();
    await allAnswer(replicas, rotatedBefore.key, 200, since, "a key in the grace granted before the switchover is accepted");
    await allAnswer(replicas, inGrace.body.key, 200, since, "the key it was rotated to is accepted");
    const statuses = await load.stop();
    // During the switch a replica may not know (503); it never says a valid key is invalid.
    expect(statuses.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    expect(statuses.at(-1)).toBe(200);
  }, 120_000);
});

function budgetConfig(): ConfigFile {
  return {
    ...DEFAULT_TEST_CONFIG,
    model_list: [...(DEFAULT_TEST_CONFIG.model_list ?? []), pricedModel("priced")],
    // Flushed often, so "what the replicas charged in one flush interval" is small and visible. fail_closed: while
    // the replicas reconnect, a limited key gets 503 rather than the local share of fail_open_local (a bound of its
    // own, docs/limits.md), so any 200 past the budget here would come from a rewound ledger.
    gatehouse_settings: { limits: { flush_interval_ms: 200, prefetch: 0, redis_unavailable: "fail_closed" } },
  };
}

/** A Redis replica of `primary` that syncs through a proxy of its own (blackhole it to make the replica lag). */
async function startLaggableReplica(primary: RedisServer) {
  const replicationProxy = await startTcpProxy("127.0.0.1", primary.port);
  const server = await startRedisServer({ replicaOf: { host: "127.0.0.1", port: replicationProxy.port } });
  return {
    port: server.port,
    info: server.info,
    promote: server.promote,
    replicationProxy,
    async stop() {
      await server.stop();
      await replicationProxy.close();
    },
  };
}

describe("a Redis failover to a replica that lagged", () => {
  let primary: RedisServer;
  let replica: Awaited<ReturnType<typeof startLaggableReplica>>;
  let redisProxy: TcpProxy;
  let cluster: Cluster;

  beforeAll(async () => {
    primary = await startRedisServer();
    replica = await startLaggableReplica(primary);
    redisProxy = await startTcpProxy("127.0.0.1", primary.port);
    cluster = await startCluster({ config: budgetConfig(), env: { REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` } });
  }, 90_000);
  afterAll(async () => {
    await cluster?.close();
    await redisProxy?.close();
    await replica?.stop();
    await primary?.stop();
  });

  it("a key never spends more than its budget plus what the replicas charged in one flush interval", async () => {
    const [A, B, C] = cluster.replicas as [Replica, Replica, Replica];
    const charge = async (r: Replica, key: string) => api(r.url, "/v1/chat/completions", { key, body: chatBody("priced", { max_tokens: 1 }) });
    const probe = await charge(A, (await generateKey(A)).key);
    expect(probe.status).toBe(200);
    const perRequest = costOf(probe.body.usage);
    const budget = 10 * perRequest;
    const k = await generateKey(A, { max_budget: budget });
    await cluster.settle();

    // Half the budget, synced to the Redis replica.
    for (let i = 0; i < 5; i++) expect((await charge([A, B, C][i % 3]!, k.key)).status).toBe(200);
    await waitFor(async () => (await replica.info("replication")).includes("master_link_status:up"), { what: "the replica to be linked" });
    const primaryClient = new Redis({ port: primary.port, host: "127.0.0.1" });
    try {
      const offset = Number(/master_repl_offset:(\d+)/.exec(await primaryClient.info("replication"))![1]);
      await waitFor(async () => Number(/slave_repl_offset:(\d+)/.exec(await replica.info("replication"))?.[1] ?? -1) >= offset, {
        what: "the replica to hold the first half of the spend",
      });
    } finally {
      primaryClient.disconnect();
    }

    // Replication stops; the rest of the budget is spent on the primary only. On one replica: a request's charge
    // reaches Redis just after its answer, so a client that hops to another replica at once may be admitted
    // against the reservation of the one before (the documented "one request beyond the budget"); on one replica
    // the charge and the next admission go down the same Redis connection in order, and the budget is exact.
    replica.replicationProxy.setMode("blackhole");
    const after: number[] = [];
    for (let i = 0; i < 6; i++) after.push((await charge(A, k.key)).status);
    expect(after).toEqual([200, 200, 200, 200, 200, 400]);
    await waitFor(async () => Number((await cluster.pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [k.key_id])).rows[0].spend) >= budget - 1e-12, {
      what: "the spend to be flushed to Postgres",
    });

    // The primary dies; the lagging replica is promoted; the address moves to it.
    await primary.stop();
    await replica.promote();
    redisProxy.retarget("127.0.0.1", replica.port);

    const statuses: number[] = [];
    // Until every replica has reached the promoted replica (and after): ask each in turn for a while.
    const until = Date.now() + 3_000;
    for (let i = 0; Date.now() < until; i++) statuses.push((await charge([A, B, C][i % 3]!, k.key)).status);
    expect(statuses.at(-1)).toBe(400);
    // Redis may be unreachable for a moment (503): never a 200 past the budget.
    // Nothing answered 200, so nothing is waiting to be flushed: Postgres has the whole spend.
    const { rows } = await cluster.pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [k.key_id]);
    const spent = Number(rows[0].spend);
    const tally = new Map<number, number>();
    for (const s of statuses) tally.set(s, (tally.get(s) ?? 0) + 1);
    const counts = [...tally].map(([s, n]) => `${n} × ${s}`);
    console.log(`budget ${budget}, spent after the failover ${spent} (${((spent / budget) * 100).toFixed(1)} %); answers after it: ${counts.join(", ")}`);
    expect(statuses.filter((s) => s === 200)).toEqual([]);
    expect(spent).toBeLessThanOrEqual(budget + 1e-12);
  }, 90_000);
});

describe("gatehouse lineage renew (a backup restored onto the same server)", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ size: 2 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("every replica starts a new epoch within the hard bound; what the database holds keeps working", async () => {
    const [A, B] = cluster.replicas as [Replica, Replica];
    const k = await generateKey(A);
    await cluster.settle();
    for (const r of cluster.replicas) expect(await r.chat(k.key)).toBe(200);
    const before = await Promise.all(cluster.replicas.map(async (r) => (await r.admin("/debug/coherence")).body));

    const cli = path.resolve(import.meta.dirname, "../dist/cli.js");
    const { stdout } = await promisify(execFile)(process.execPath, [cli, "lineage", "renew"], {
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: cluster.db.url, GATEHOUSE_MASTER_KEY: cluster.masterKey },
    });
    expect(stdout).toContain("new history");
    const renewedAt = Date.now();
    await Promise.all(
      cluster.replicas.map((r, i) =>
        waitFor(async () => (await r.admin("/debug/coherence")).body.lineage !== before[i]!.lineage, {
          timeoutMs: HARD_BOUND_MS,
          what: `${r.name} to follow the renewed lineage`,
        }),
      ),
    );
    expect(Date.now() - renewedAt).toBeLessThanOrEqual(HARD_BOUND_MS);
    for (const r of cluster.replicas) expect(await r.chat(k.key)).toBe(200);
    expect((await B.admin("/key/block", { key: k.key })).status).toBe(200);
    await allAnswer(cluster.replicas, k.key, 401, Date.now(), "a key blocked after the renewal is refused");
  }, 60_000);
});
