import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type FakeUpstream, startFakeUpstream } from "./helpers/fake-upstream.js";
import { api } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

/**
 * least-busy across two replica processes (docs/routing.md, "Strategies"): the calls in flight it compares are the
 * whole cluster's, read from Redis, not each replica's own. A deployment held busy by a call made through one
 * replica is avoided by the other replica too — with per-replica counts (LiteLLM's), the other replica sees it idle
 * and sends it every other request.
 */
let upstream: FakeUpstream;
let cluster: Cluster;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  cluster = await startCluster({
    size: 2,
    config: {
      model_list: [
        // "stream-gated" holds its stream open until the test releases it: a call in flight for as long as we like.
        { model_name: "pool", litellm_params: { model: "openai/stream-gated", api_base: `${upstream.url}/v1/held`, api_key: "k" } },
        { model_name: "pool", litellm_params: { model: "mock/pool-quick" } },
      ],
      router_settings: { routing_strategy: "least-busy" },
    },
  });
}, 90_000);
afterAll(async () => {
  // Whatever happened, no held stream is left hanging.
  for (let i = 0; i < 10; i++) upstream?.releaseNext();
  await cluster?.close();
  await upstream?.close();
});

describe("least-busy", () => {
  it("counts the cluster's calls in flight: a deployment busy through one replica is avoided by the other", { timeout: 30_000 }, async () => {
    const [A, B] = cluster.replicas as [Cluster["replicas"][0], Cluster["replicas"][0]];
    const key = (await A.admin("/key/generate", {})).body.key as string;
    await cluster.settle();
    const routing = (await A.admin("/debug/routing")).body;
    expect(routing.strategy).toBe("least-busy");
    const held = routing.deployments.find((d: { deployment: string }) => d.deployment === "openai/stream-gated").id as string;

    // Through A, streams until one is served by the held deployment; it stays open.
    let open: Response | undefined;
    for (let i = 0; i < 4 && !open; i++) {
      const res = await fetch(`${A.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "pool", stream: true, messages: [{ role: "user", content: "Hi" }] }),
        signal: AbortSignal.timeout(10_000),
      });
      expect(res.status).toBe(200);
      if (res.headers.get("gatehouse-deployment") === held) open = res;
      else await res.text();
    }
    expect(open, "a stream served by the held deployment").toBeDefined();
    // B sees that call in flight, though it was made through A.
    await waitFor(async () => (await B.admin("/debug/routing")).body.deployments.find((d: { id: string }) => d.id === held).in_flight === 1, {
      what: "B to see the held call in flight",
    });

    // Ten requests alternating B and A: every one goes to the idle deployment.
    const servedBy: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await api((i % 2 === 0 ? B : A).url, "/v1/chat/completions", { key, body: { model: "pool", messages: [{ role: "user", content: "Hi" }] } });
      expect(res.status, res.text).toBe(200);
      servedBy.push(res.headers.get("gatehouse-deployment")!);
    }
    expect(servedBy.filter((d) => d === held)).toEqual([]);

    // Released, the held call ends and its count with it.
    upstream.releaseNext();
    upstream.releaseNext();
    expect(await open!.text()).toContain("[DONE]");
    await waitFor(async () => (await B.admin("/debug/routing")).body.deployments.find((d: { id: string }) => d.id === held).in_flight === 0, {
      what: "the held call to leave the count",
    });
  });
});
