import { Pool } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { waitFor } from "./helpers/services.js";
import { startTcpProxy, viaProxy, type TcpProxy } from "./support/tcp-proxy.mjs";

/**
 * A key that exists in Postgres authenticates on every replica, whatever number of unknown keys arrives at the
 * same time (docs/security.md). Replica C takes a flood of never-issued keys while its LISTEN connection is
 * refused, so a key generated on A reaches C's token filter only with C's next catch-up; meanwhile the key's
 * first use on C goes through the batched check of unknown tokens, which the flood cannot exhaust.
 */
let cluster: Cluster;
let listenProxy: TcpProxy;
let A: Replica;
let C: Replica;

beforeAll(async () => {
  cluster = await startCluster({ size: 1 });
  A = cluster.replicas[0]!;
  listenProxy = await startTcpProxy("127.0.0.1", Number(new URL(cluster.db.url).port));
  // Migrations at start go through the LISTEN URL too: cut it once C is up.
  C = await cluster.addReplica("C", { DATABASE_LISTEN_URL: viaProxy(cluster.db.url, listenProxy) });
  listenProxy.setMode("reject");
  listenProxy.cutAll();
  await waitFor(async () => (await C.admin("/debug/coherence")).body.listener !== "listening", { what: "C's LISTEN connection to be down" });
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await listenProxy?.close();
});

describe("a fresh key under a flood of unknown keys", () => {
  it("is accepted on the replica that has not heard of it, on its first use, in every trial", async () => {
    const pool = new Pool(C.url, { connections: 256, pipelining: 1 });
    const body = JSON.stringify({ model: "mock-gpt", messages: [{ role: "user", content: "hi" }] });
    const startedAt = Date.now();
    let flooding = true;
    let sent = 0;
    const refusedFlood: number[] = [];
    const flood = Array.from({ length: 256 }, async (_, lane) => {
      for (let i = 0; flooding; i++) {
        const res = await pool.request({
          path: "/v1/chat/completions",
          method: "POST",
          headers: { authorization: `Bearer sk-flood-${lane}-${i}-${Math.random().toString(36).slice(2)}`, "content-type": "application/json" },
          body,
        });
        await res.body.dump();
        sent++;
        if (res.statusCode !== 401) refusedFlood.push(res.statusCode);
      }
    });
    try {
      await waitFor(() => sent > 2_000, { timeoutMs: 20_000, what: "the flood to be under way" });
      const firstUse: number[] = [];
      for (let trial = 0; trial < 15; trial++) {
        const k = await generateKey(A);
        firstUse.push(await C.chat(k.key));
      }
      expect(firstUse).toEqual(Array(15).fill(200));
    } finally {
      flooding = false;
      await Promise.all(flood);
      await pool.close();
    }
    expect(refusedFlood).toEqual([]);
    // The flood cost Postgres one catch-up per 150 unknown keys waiting, besides the heartbeat's.
    const checks = (await C.admin("/debug/coherence")).body.unknown_tokens;
    const seconds = (Date.now() - startedAt) / 1000;
    console.log(
      `flood: ${sent} unknown keys in ${seconds.toFixed(1)} s, ${checks.catchUpsAsked} catch-ups asked (${((checks.catchUpsAsked / checks.asked) * 1000).toFixed(1)} per 1,000)`,
    );
    expect(checks.asked).toBeGreaterThan(2_000);
    expect(checks.catchUpsAsked).toBeLessThanOrEqual(checks.asked / 150 + 1);
  }, 90_000);
});
