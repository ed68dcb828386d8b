import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type FakeUpstream, startFakeUpstream } from "./helpers/fake-upstream.js";
import { waitFor } from "./helpers/services.js";

/**
 * Background health checks on three replica processes (docs/routing.md, "Health checks"): one round per interval
 * for the whole cluster, whichever replica runs it; results shared, so /health says the same on every replica.
 */
let upstream: FakeUpstream;
let cluster: Cluster;
const INTERVAL_S = 1;

const callsUnder = (path: string) => upstream.requests.filter((r) => r.path.startsWith(`/v1/${path}/`));

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const v1 = `${upstream.url}/v1`;
  cluster = await startCluster({
    size: 3,
    config: {
      general_settings: { background_health_checks: true, health_check_interval: INTERVAL_S },
      model_list: [
        { model_name: "probed", litellm_params: { model: "openai/echo", api_base: `${v1}/probed`, api_key: "k" } },
        { model_name: "probed", litellm_params: { model: "openai/broken", api_base: `${v1}/probed-broken`, api_key: "k" } },
        {
          model_name: "quiet",
          litellm_params: { model: "openai/echo", api_base: `${v1}/quiet`, api_key: "k" },
          model_info: { disable_background_health_check: true },
        },
        { model_name: "vectors", litellm_params: { model: "openai/echo", api_base: `${v1}/vectors`, api_key: "k" }, model_info: { mode: "embedding" } },
      ],
    },
  });
}, 90_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

describe("background health checks", () => {
  it("run once per interval for the whole cluster, not once per replica", { timeout: 30_000 }, async () => {
    await waitFor(() => callsUnder("probed").length >= 1, { what: "a first health check" });
    const first = callsUnder("probed").length;
    const started = Date.now();
    await waitFor(() => callsUnder("probed").length >= first + 6, { timeoutMs: 20_000, what: "six more rounds" });
    const calls = callsUnder("probed").length - first;
    const rounds = (Date.now() - started) / (INTERVAL_S * 1000);
    process.stdout.write(`health checks: ${calls} calls to one deployment in ${rounds.toFixed(1)} intervals from 3 replicas\n`);
    // Three replicas each checking would make about three calls an interval.
    expect(calls).toBeLessThanOrEqual(Math.floor(rounds) + 2);
    // Each check is the smallest call: one token, or one embedding for a model whose mode says so.
    expect(callsUnder("probed").at(-1)!.body).toMatchObject({ model: "echo", max_tokens: 1 });
    expect(callsUnder("vectors").at(-1)!.body).toEqual({ model: "echo", input: "ping" });
    expect(callsUnder("vectors").at(-1)!.path).toBe("/v1/vectors/embeddings");
    expect(callsUnder("quiet")).toEqual([]);
  });

  it("/health reports every deployment in LiteLLM's shape, the same on every replica", async () => {
    for (const r of cluster.replicas) expect((await fetch(`${r.url}/health`)).status).toBe(401);
    await waitFor(async () => (await cluster.replicas[0]!.admin("/health")).body.unhealthy_count === 1, { what: "the broken deployment to be reported" });
    const seen = await Promise.all(cluster.replicas.map(async (r) => (await r.admin("/health?model=probed")).body));
    for (const body of seen) {
      expect(body.background_health_checks).toBe(true);
      expect(body.healthy_endpoints.map((e: { model: string }) => e.model)).toEqual(["openai/echo"]);
      expect(body.unhealthy_endpoints).toHaveLength(1);
      expect(body.unhealthy_endpoints[0]).toMatchObject({ model: "openai/broken", model_name: "probed", error: "HTTP 500" });
      expect(JSON.stringify(body)).not.toContain('"k"');
    }
    const all = (await cluster.replicas[1]!.admin("/health")).body;
    expect(all.unchecked_endpoints.map((e: { model_name: string }) => e.model_name)).toEqual(["quiet"]);
    expect((await cluster.replicas[2]!.admin("/health?model=nope")).status).toBe(404);
  });

  it("a deployment failing its checks cools down before any client meets it", async () => {
    const broken = (await cluster.replicas[0]!.admin("/debug/routing")).body.deployments.find((d: { deployment: string }) => d.deployment === "openai/broken");
    // The default allowed_fails is 3: the fourth failed check (four rounds) starts its cooldown, on every replica.
    for (const r of cluster.replicas) {
      await waitFor(async () => (await r.admin("/debug/routing")).body.deployments.find((d: { id: string }) => d.id === broken.id).cooling_ms > 0, {
        timeoutMs: 15_000,
        what: `${r.name} to hold the broken deployment's cooldown`,
      });
    }
  });
});
