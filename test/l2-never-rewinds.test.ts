import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { startRedisServer, type RedisServer } from "./helpers/redis-server.js";
import { waitFor } from "./helpers/services.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

/**
 * The shared cache never rewinds (docs/coherence.md, invariant 9): whatever Redis loses, restores from a
 * snapshot or misses while unreachable, no replica serves an L2 record older than an invalidation that
 * committed. Each scenario runs on a Redis server of its own, so restarting it disturbs no other test.
 *
 * The last describe runs the same scenario with the old behaviour switched back on (a test-build switch), to
 * show the scenario does reproduce the bug it guards against.
 */
interface Setup {
  redisServer: RedisServer;
  proxy: TcpProxy;
  cluster: Cluster;
  redis: Redis;
}

async function setUp(env: Record<string, string> = {}): Promise<Setup> {
  const redisServer = await startRedisServer();
  const proxy = await startTcpProxy("127.0.0.1", redisServer.port);
  const cluster = await startCluster({ size: 2, env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, ...env } });
  const redis = new Redis(redisServer.port, "127.0.0.1", { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on("error", () => {});
  await redis.connect();
  return { redisServer, proxy, cluster, redis };
}

async function tearDown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  s.redis.disconnect();
  await s.cluster.close();
  await s.proxy.close();
  await s.redisServer.stop();
}

/** Every replica is connected to the Redis now answering (and, unless the old behaviour is on, trusts L2 again). */
async function reconnected(s: Setup, expectTrusted = true) {
  const runId = /run_id:([0-9a-f]+)/.exec(await s.redis.info("server"))![1];
  await Promise.all(
    s.cluster.replicas.map((r) =>
      waitFor(
        async () => {
          const l2 = (await r.admin("/debug/coherence")).body.l2;
          return l2.redis === "ready" && (!expectTrusted || (l2.trusted && l2.redis_run_id === runId));
        },
        { what: `${r.name} to reconnect to Redis` },
      ),
    ),
  );
}

/** A key whose record replica `on` has read from Postgres and put in L2 (a valid record, not a tombstone). */
async function keyInL2(s: Setup, on: Replica) {
  const res = await on.admin("/key/generate", {});
  expect(res.status, res.text).toBe(200);
  await s.cluster.settle();
  expect(await on.chat(res.body.key)).toBe(200);
  const redisKey = (await s.cluster.redisKeys()).authRecord(res.body.token);
  await waitFor(async () => (await s.redis.get(redisKey))?.includes("|{"), { what: "the record to be in L2" });
  return res.body as { key: string; token: string };
}

describe("L2 after Redis comes back from an older snapshot", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setUp();
  }, 60_000);
  afterAll(() => tearDown(s));

  it("a blocked key and a deleted key stay refused on a running replica and on one started afterwards", async () => {
    const [A, B] = s.cluster.replicas as [Replica, Replica];
    const blocked = await keyInL2(s, A);
    const deleted = await keyInL2(s, A);
    const snapshot = await s.redisServer.snapshot();

    expect((await A.admin("/key/block", { key: blocked.key })).status).toBe(200);
    expect((await A.admin("/key/delete", { keys: [deleted.key] })).status).toBe(200);
    await s.cluster.settle();

    // Redis restarts with the records as they were before the block and the delete, tombstones gone (the
    // replicas notice within milliseconds and repair it, so the stale record is not asserted here).
    await s.redisServer.restartFrom(snapshot);
    await reconnected(s);

    // B never looked these keys up: its L1 misses, so it would read L2.
    expect(await B.chat(blocked.key)).toBe(401);
    expect(await B.chat(deleted.key)).toBe(401);
    const C = await s.cluster.addReplica("C");
    await reconnected(s);
    expect(await C.chat(blocked.key)).toBe(401);
    expect(await C.chat(deleted.key)).toBe(401);
    // The guard repaired L2 from the event table: the stale record is gone from Redis too (a tombstone, or
    // the record as the block left it, read since).
    const value = (await s.redis.get((await s.cluster.redisKeys()).authRecord(blocked.token)))!;
    const json = value.split("|").slice(2).join("|"); // <version>|<mac>|<json>, or <version>| for a tombstone
    if (json) expect(JSON.parse(json).blocked).toBe(true);
  }, 30_000);

  it("a block committed while no replica could reach Redis is not undone when Redis answers again", async () => {
    const [A, B] = s.cluster.replicas as [Replica, Replica];
    const key = await keyInL2(s, A);
    s.proxy.setMode("blackhole");
    s.proxy.cutAll();
    // Postgres is up: the block commits; every replica's tombstone write fails.
    expect((await B.admin("/key/block", { key: key.key })).status).toBe(200);
    s.proxy.setMode("pass");
    s.proxy.cutAll();
    // The old record is still in Redis (nothing restarted).
    expect(await s.redis.get((await s.cluster.redisKeys()).authRecord(key.token))).toContain("|{");
    const D = await s.cluster.addReplica("D");
    await reconnected(s);
    for (let i = 0; i < 20; i++) expect(await D.chat(key.key)).toBe(401);
  }, 30_000);
});

describe("the same scenario with the old behaviour switched back on (test-build switch)", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setUp({ GATEHOUSE_TEST_REINSTATE_BUGS: "l2-rewind" });
  }, 60_000);
  afterAll(() => tearDown(s));

  it("serves the blocked key from the restored record: the scenario reproduces the bug", async () => {
    const [A, B] = s.cluster.replicas as [Replica, Replica];
    const blocked = await keyInL2(s, A);
    const snapshot = await s.redisServer.snapshot();
    expect((await A.admin("/key/block", { key: blocked.key })).status).toBe(200);
    await s.cluster.settle();
    await s.redisServer.restartFrom(snapshot);
    await reconnected(s, false);
    expect(await B.chat(blocked.key)).toBe(200);
  }, 30_000);
});
