import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashKey } from "../src/auth/key-material.js";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { waitFor } from "./helpers/services.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

/**
 * No stale refill (docs/coherence.md, invariant 5), across the look-ups a replica shares: a request that
 * arrives after an invalidation was applied never joins a database read that began before it, and a read an
 * invalidation overtook is read again rather than answered. Replica A reads Postgres through a slow link
 * (its LISTEN connection is direct, so it hears about changes at once); B is the admin's replica.
 */
async function setUp(env: Record<string, string> = {}) {
  const cluster = await startCluster({ size: 1, env });
  const proxy = await startTcpProxy("127.0.0.1", 5432);
  const A = await cluster.addReplica("A", { DATABASE_URL: viaProxy(cluster.db.url, proxy), DATABASE_LISTEN_URL: cluster.db.url });
  return { cluster, proxy, A, B: cluster.replicas[0]! };
}

/**
 * A's first look-up of a fresh key starts a slow read; meanwhile the key is blocked through B and A applies
 * the block's event; then a second request reaches A. Returns both answers.
 */
async function blockDuringSlowRead(cluster: Cluster, proxy: TcpProxy, A: Replica, B: Replica) {
  const gen = await B.admin("/key/generate", {});
  expect(gen.status).toBe(200);
  await cluster.settle();
  // Answers come back late: the read runs in Postgres at once, before the block, and arrives a second later.
  proxy.setLatency(1_000, "toClient");
  let readRan = false;
  void proxy.answered(hashKey(gen.body.key)).then(() => (readRan = true));
  const first = A.chat(gen.body.key);
  // The first read is on its way: Postgres has answered A's look-up of the key (by its hash), and the answer is held back.
  await waitFor(() => readRan, { what: "A's look-up of the key to run in Postgres" });
  const blocked = await B.admin("/key/block", { key: gen.body.key });
  expect(blocked.status).toBe(200);
  const { rows } = await cluster.pool.query("SELECT max(id)::int AS id FROM gh_key_events");
  await waitFor(async () => (await A.admin("/debug/coherence")).body.last_applied_event_id >= rows[0].id, { what: "A to apply the block" });
  const second = await A.chat(gen.body.key);
  const firstStatus = await first;
  proxy.setLatency(0);
  return { first: firstStatus, second };
}

describe("a request that arrives after an invalidation does not join a read that began before it", () => {
  let s: Awaited<ReturnType<typeof setUp>>;
  beforeAll(async () => {
    s = await setUp();
  }, 60_000);
  afterAll(async () => {
    await s?.cluster.close();
    await s?.proxy.close();
  });

  it("both the request that started the slow read and the one that came after the block are refused", async () => {
    const { first, second } = await blockDuringSlowRead(s.cluster, s.proxy, s.A, s.B);
    expect(second).toBe(401);
    // The first request's read was overtaken by the block: it was read again, not answered from.
    expect(first).toBe(401);
  }, 30_000);
});

describe("the same scenario with the old behaviour switched back on (test-build switch)", () => {
  let s: Awaited<ReturnType<typeof setUp>>;
  beforeAll(async () => {
    s = await setUp({ GATEHOUSE_TEST_REINSTATE_BUGS: "joined-fill" });
  }, 60_000);
  afterAll(async () => {
    await s?.cluster.close();
    await s?.proxy.close();
  });

  it("answers 200 for the key blocked before the second request arrived: the scenario reproduces the bug", async () => {
    const { second } = await blockDuringSlowRead(s.cluster, s.proxy, s.A, s.B);
    expect(second).toBe(200);
  }, 30_000);
});
