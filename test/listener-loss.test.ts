import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { waitFor } from "./helpers/services.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

/** docs/coherence.md #2: at most the heartbeat interval (1 s) when notifications are lost; hard bound 2 s. */
const STALENESS_BOUND_MS = 2_000;

let cluster: Cluster;
let A: Replica, B: Replica, C: Replica;
let listenProxy: TcpProxy;
beforeAll(async () => {
  cluster = await startCluster({ size: 2 });
  [A, B] = cluster.replicas as [Replica, Replica];
  // C's LISTEN connection goes through a proxy we can blackhole: notifications then vanish silently.
  const pg = new URL(cluster.env.DATABASE_URL!);
  listenProxy = await startTcpProxy(pg.hostname, Number(pg.port || 5432));
  C = await cluster.addReplica("C", { DATABASE_LISTEN_URL: viaProxy(cluster.env.DATABASE_URL!, listenProxy) });
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await listenProxy?.close();
});

async function generate(fields: Record<string, unknown> = {}) {
  const res = await A.admin("/key/generate", fields);
  expect(res.status).toBe(200);
  return res.body as { key: string; token: string };
}

async function refusedWithin(replica: Replica, key: string, boundMs: number): Promise<number> {
  const started = Date.now();
  await waitFor(async () => (await replica.chat(key)) === 401, { timeoutMs: boundMs, intervalMs: 5, what: `${replica.name} to refuse the key` });
  return Date.now() - started;
}

describe("a replica whose LISTEN connection dies still sees every change within the bound", () => {
  it("pg_terminate_backend on B's listener, then a change on A: B enforces it within the bound and re-listens", async () => {
    const k = await generate();
    await cluster.settle();
    expect(await B.chat(k.key)).toBe(200);
    const killed = await cluster.pool.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1", [
      `gatehouse-listen:${B.replicaId}`,
    ]);
    expect(killed.rows).toEqual([{ ok: true }]);
    expect((await A.admin("/key/block", { key: k.key })).status).toBe(200);
    await refusedWithin(B, k.key, STALENESS_BOUND_MS);

    // The listener comes back by itself, and notifications flow again.
    await waitFor(async () => (await B.admin("/debug/coherence")).body.listener === "listening", { timeoutMs: 5_000, what: "B to listen again" });
    const k2 = await generate();
    await cluster.settle();
    expect(await B.chat(k2.key)).toBe(200);
    expect((await A.admin("/key/delete", { keys: [k2.key] })).status).toBe(200);
    await refusedWithin(B, k2.key, STALENESS_BOUND_MS);
  });

  it("notifications lost silently (blackholed LISTEN connection): the heartbeat still applies the change within the bound", async () => {
    const keys = await Promise.all(Array.from({ length: 3 }, () => generate()));
    await cluster.settle();
    for (const k of keys) expect(await C.chat(k.key)).toBe(200);
    listenProxy.setMode("blackhole");
    try {
      const before = (await C.admin("/debug/coherence")).body;
      for (const k of keys) {
        expect((await A.admin("/key/block", { key: k.key })).status).toBe(200);
        const took = await refusedWithin(C, k.key, STALENESS_BOUND_MS);
        expect(took).toBeLessThanOrEqual(STALENESS_BOUND_MS);
      }
      const after = (await C.admin("/debug/coherence")).body;
      // Applied by replaying the table, not by a notification.
      expect(after.replayed).toBeGreaterThan(before.replayed);
    } finally {
      listenProxy.setMode("pass");
      listenProxy.cutAll();
    }
    await waitFor(async () => (await C.admin("/debug/coherence")).body.listener === "listening", { timeoutMs: 10_000, what: "C to listen again" });
  });

  it("with notifications flowing, a change reaches the other replicas in milliseconds", async () => {
    const k = await generate();
    await cluster.settle();
    expect(await B.chat(k.key)).toBe(200);
    const { body: before } = await B.admin("/debug/coherence");
    expect((await A.admin("/key/block", { key: k.key })).status).toBe(200);
    const { rows } = await cluster.pool.query("SELECT max(id)::int AS id FROM gh_key_events");
    const applied = await waitFor(async () => (await B.admin(`/debug/coherence?after_event_id=${rows[0].id - 1}`)).body.applied.find((a: any) => a.id === rows[0].id), {
      timeoutMs: STALENESS_BOUND_MS,
      what: "B to apply the event",
    });
    expect(applied.lagMs).toBeLessThan(500);
    const { body: after } = await B.admin("/debug/coherence");
    expect(after.notifications).toBeGreaterThan(before.notifications);
  });
});
