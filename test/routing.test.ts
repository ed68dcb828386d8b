import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type FakeUpstream, startFakeUpstream } from "./helpers/fake-upstream.js";
import { api } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { INPUT_COST, OUTPUT_COST } from "./helpers/prices.js";

/**
 * Retries, fallbacks and cooldowns on three replica processes sharing one Redis (docs/routing.md), against a fake
 * upstream whose deployments fail as told: "broken" answers 500, "rate-limited" 429; the mock provider serves.
 */
let upstream: FakeUpstream;
let cluster: Cluster;

const ALLOWED_FAILS = 1;
const CAPPED_RPM = 30;
const SOLO_RPM = 5;
const callsTo = (model: string) => upstream.requests.filter((r) => r.body?.model === model).length;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const v1 = `${upstream.url}/v1`;
  cluster = await startCluster({
    size: 3,
    config: {
      model_list: [
        // One model, a dead deployment and a live one.
        { model_name: "flaky", litellm_params: { model: "openai/broken", api_base: v1, api_key: "k" } },
        { model_name: "flaky", litellm_params: { model: "mock/flaky-ok" } },
        // A model whose only deployment is rate limited, falling back to a dearer one.
        {
          model_name: "limited",
          litellm_params: { model: "openai/rate-limited", api_base: v1, api_key: "k", input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST },
        },
        { model_name: "backup", litellm_params: { model: "mock/backup", input_cost_per_token: 4 * INPUT_COST, output_cost_per_token: 4 * OUTPUT_COST } },
        // A model that only ever fails, with no fallback.
        { model_name: "doomed", litellm_params: { model: "openai/broken", api_base: `${v1}/doomed`, api_key: "k" } },
        // A model of two deployments that both fail.
        { model_name: "twins", litellm_params: { model: "openai/broken", api_base: `${v1}/twin1`, api_key: "k" } },
        { model_name: "twins", litellm_params: { model: "openai/broken", api_base: `${v1}/twin2`, api_key: "k" } },
        // A deployment with its own rpm, and one without limits beside it that takes the overflow.
        { model_name: "capped", litellm_params: { model: "openai/echo", api_base: `${v1}/capped`, api_key: "k", rpm: CAPPED_RPM } },
        { model_name: "capped", litellm_params: { model: "mock/capped-overflow" } },
        // A model whose only deployment has an rpm.
        { model_name: "solo-capped", litellm_params: { model: "openai/echo", api_base: `${v1}/solo-capped`, api_key: "k", rpm: SOLO_RPM } },
      ],
      router_settings: { num_retries: 2, allowed_fails: ALLOWED_FAILS, cooldown_time: 60, fallbacks: [{ limited: ["backup"] }] },
    },
  });
}, 90_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

async function newKey(fields: Record<string, unknown> = {}): Promise<string> {
  const res = await cluster.replicas[0]!.admin("/key/generate", fields);
  expect(res.status, res.text).toBe(200);
  return res.body.key;
}

const chat = (replica: number, key: string, model: string, extra: Record<string, unknown> = {}) =>
  api(cluster.replicas[replica]!.url, "/v1/chat/completions", { key, body: { model, messages: [{ role: "user", content: "Hi" }], ...extra } });

describe("a dead deployment", () => {
  it("is retried away from, and gets at most allowed_fails + 1 calls from the whole cluster before its cooldown holds everywhere", async () => {
    const key = await newKey();
    await cluster.settle();
    const before = callsTo("broken");
    // Sequential requests, round-robin over the replicas: each replica's router takes the dead one first now and then.
    for (let i = 0; i < 30; i++) {
      const res = await chat(i % 3, key, "flaky");
      expect(res.status, res.text).toBe(200);
      expect(res.headers.get("gatehouse-deployment")).toBeTruthy();
    }
    const calls = callsTo("broken") - before;
    process.stdout.write(`dead deployment: ${calls} calls from 3 replicas over 30 requests (allowed_fails ${ALLOWED_FAILS})\n`);
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(ALLOWED_FAILS + 1);
  });

  it("a model's only deployment is retried, and never cooled down (its errors stay its own)", async () => {
    const key = await newKey();
    for (const replica of [0, 1, 2]) {
      const before = upstream.requests.filter((r) => r.path.includes("/doomed/")).length;
      const res = await chat(replica, key, "doomed");
      expect(res.status).toBe(502);
      // 1 attempt and num_retries (2) retries, all on the one deployment.
      expect(upstream.requests.filter((r) => r.path.includes("/doomed/")).length - before).toBe(3);
    }
  });

  it("holds a cooldown on every replica, and with every deployment of a model cooling down answers 503 with a Retry-After", async () => {
    // "flaky"'s dead deployment cooled down in the first test: every replica says so.
    for (const r of cluster.replicas) {
      const state = (await r.admin("/debug/routing")).body;
      expect(state.shared).toBe(true);
      const flaky = state.deployments.filter((d: { model: string }) => d.model === "flaky");
      expect(flaky.map((d: { cooling_ms: number }) => d.cooling_ms > 0).sort()).toEqual([false, true]);
      // ...and its metrics: the cooldown, and that the state is the cluster's.
      const dead = flaky.find((d: { cooling_ms: number }) => d.cooling_ms > 0).id;
      const metrics = (await r.admin("/metrics")).text;
      expect(metrics).toMatch(new RegExp(`gatehouse_deployment_cooldown_seconds\\{deployment="${dead}"\\} \\d`));
      expect(metrics).toContain("gatehouse_routing_shared 1");
    }
    // The failures were counted where they happened: 2 in all, on the replicas that saw them.
    let failures = 0;
    for (const r of cluster.replicas) {
      for (const m of (await r.admin("/metrics")).text.matchAll(/gatehouse_deployment_failures_total\{deployment="([^"]+)",kind="server_error"\} (\d+)/g)) {
        const id = m[1]!;
        const state = (await r.admin("/debug/routing")).body.deployments.find((d: { id: string }) => d.id === id);
        if (state?.model === "flaky") failures += Number(m[2]);
      }
    }
    expect(failures).toBe(ALLOWED_FAILS + 1);
    // Two dead deployments of one model: the first requests spend their attempts until both cool down.
    const key = await newKey();
    let res = await chat(0, key, "twins");
    expect(res.status).toBe(502);
    res = await chat(1, key, "twins");
    await waitFor(
      async () => {
        res = await chat(2, key, "twins");
        return res.status === 503;
      },
      { timeoutMs: 2_000, intervalMs: 20, what: "both deployments to cool down" },
    );
    expect(res.body.error.code).toBe("no_deployment_available");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("fallbacks", () => {
  it("a streaming request whose deployment answers 429 completes from the fallback, priced at the fallback", async () => {
    const key = await newKey({ max_budget: 100 });
    const res = await fetch(`${cluster.replicas[1]!.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "limited", messages: [{ role: "user", content: "Hi" }], stream: true, stream_options: { include_usage: true } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-litellm-attempted-fallbacks")).toBe("1");
    const text = await res.text();
    expect(text).toContain("[DONE]");
    const usage = text
      .split("\n\n")
      .map((f) => f.slice(6))
      .filter((d) => d.includes('"usage"'))
      .map((d) => JSON.parse(d).usage)
      .at(-1);
    const info = await cluster.replicas[1]!.admin(`/key/info?key=${key}`);
    expect(info.body.info.spend).toBeCloseTo(usage.prompt_tokens * 4 * INPUT_COST + usage.completion_tokens * 4 * OUTPUT_COST, 12);
  });

  it("a fallback that costs more never takes a key past its budget by more than the request that spent it", async () => {
    // A budget below one request at the fallback's price: the first is admitted (something is left) and spends it.
    const key = await newKey({ max_budget: 0.001 });
    const first = await chat(2, key, "limited");
    expect(first.status, first.text).toBe(200);
    for (const replica of [0, 1, 2]) {
      const res = await chat(replica, key, "limited");
      expect(res.status).toBe(400);
      expect(res.body.error.type).toBe("budget_exceeded");
    }
  });

  it("skips a fallback the key may not use", async () => {
    const key = await newKey({ models: ["limited"] });
    const res = await chat(0, key, "limited");
    expect(res.status).toBe(429);
  });
});

describe("request-level num_retries and fallbacks (LiteLLM's)", () => {
  const doomedCalls = () => upstream.requests.filter((r) => r.path.includes("/doomed/")).length;

  it("num_retries may lower the configured retries, never raise them, and is not sent upstream", async () => {
    const key = await newKey();
    let before = doomedCalls();
    expect((await chat(0, key, "doomed", { num_retries: 0 })).status).toBe(502);
    expect(doomedCalls() - before).toBe(1);
    before = doomedCalls();
    expect((await chat(1, key, "doomed", { num_retries: 50 })).status).toBe(502);
    expect(doomedCalls() - before).toBe(3); // the config's 2 retries
    expect(upstream.requests.at(-1)!.body).not.toHaveProperty("num_retries");
    const bad = await chat(2, key, "doomed", { num_retries: "lots" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("num_retries");
  });

  it("fallbacks name the models to go to next, within what the key may use", async () => {
    const key = await newKey();
    const res = await chat(0, key, "doomed", { fallbacks: ["backup"], num_retries: 0 });
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get("x-litellm-attempted-fallbacks")).toBe("1");
    const narrow = await newKey({ models: ["doomed"] });
    expect((await chat(0, narrow, "doomed", { fallbacks: ["backup"], num_retries: 0 })).status).toBe(502);
  });
});

describe("a deployment's own limits (litellm_params rpm), held for the whole cluster", () => {
  const callsUnder = (path: string) => upstream.requests.filter((r) => r.path.startsWith(`/v1/${path}/`)).length;

  it(`a deployment with rpm: ${CAPPED_RPM} gets exactly ${CAPPED_RPM} calls in its minute under concurrent load from every replica; the rest go to the model's other deployment`, async () => {
    const key = await newKey();
    await cluster.settle();
    const before = callsUnder("capped");
    // 120 requests, 40 from each replica, 8 at a time per replica: far more than the deployment's minute allows.
    const served = new Map<string, number>();
    await Promise.all(
      [0, 1, 2].map(async (replica) => {
        for (let round = 0; round < 5; round++) {
          const answers = await Promise.all(Array.from({ length: 8 }, () => chat(replica, key, "capped")));
          for (const res of answers) {
            expect(res.status, res.text).toBe(200);
            const d = res.headers.get("gatehouse-deployment")!;
            served.set(d, (served.get(d) ?? 0) + 1);
          }
        }
      }),
    );
    const calls = callsUnder("capped") - before;
    process.stdout.write(`rpm ${CAPPED_RPM}: ${calls} calls to the capped deployment out of 120 requests from 3 replicas; served by ${JSON.stringify([...served.values()])}\n`);
    expect(calls).toBe(CAPPED_RPM);
    expect([...served.values()].reduce((a, b) => a + b, 0)).toBe(120);
    // The metrics agree: the capped deployment answered 30 times across the replicas, and was found full the rest.
    const capped = (await cluster.replicas[0]!.admin("/debug/routing")).body.deployments.find(
      (d: { deployment: string; model: string }) => d.model === "capped" && d.deployment === "openai/echo",
    );
    expect(capped).toMatchObject({ rpm: CAPPED_RPM });
    let answered = 0;
    let full = 0;
    for (const r of cluster.replicas) {
      const text = (await r.admin("/metrics")).text;
      answered += Number(text.match(new RegExp(`gatehouse_deployment_attempts_total\\{deployment="${capped.id}",outcome="answered"\\} (\\d+)`))?.[1] ?? 0);
      full += Number(text.match(new RegExp(`gatehouse_deployment_attempts_total\\{deployment="${capped.id}",outcome="at_capacity"\\} (\\d+)`))?.[1] ?? 0);
    }
    // Latency is merged across the cluster every second: each replica then reports the capped deployment's.
    for (const r of cluster.replicas) {
      await waitFor(async () => new RegExp(`gatehouse_deployment_latency_seconds\\{deployment="${capped.id}"\\} [0-9.e-]+`).test((await r.admin("/metrics")).text), {
        what: `${r.name} to report the deployment's latency`,
      });
    }
    expect(answered).toBe(CAPPED_RPM);
    expect(full).toBeGreaterThan(0);
  });

  it("a model whose every deployment is at its limit answers 429 with a Retry-After, on every replica", async () => {
    const key = await newKey();
    await cluster.settle();
    const before = callsUnder("solo-capped");
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => chat(i % 3, key, "solo-capped")));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(SOLO_RPM);
    const refused = answers.filter((r) => r.status !== 200);
    for (const res of refused) {
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe("no_deployment_available");
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    expect(callsUnder("solo-capped") - before).toBe(SOLO_RPM);
  });
});
