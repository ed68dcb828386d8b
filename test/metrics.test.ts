import { AggregatorRegistry, Histogram, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CountedHistogram } from "../src/metrics/counted-histogram.js";
import { DEFAULT_TEST_CONFIG, startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { chatBody, openAIError } from "./helpers/http.js";

const METRICS_TOKEN = "metrics-token-0123456789abcdef";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway({
    config: {
      model_list: [
        ...DEFAULT_TEST_CONFIG.model_list,
        { model_name: "priced", litellm_params: { model: "mock/priced", input_cost_per_token: 0.001, output_cost_per_token: 0.002 } },
      ],
      gatehouse_settings: { metrics: { token: METRICS_TOKEN } },
    },
  });
});
afterAll(async () => {
  await gw?.close();
});

/** The value of one series in Prometheus text, or undefined when it is not there. */
function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe("GET /metrics", () => {
  it("needs the metrics token or the master key; a virtual key or nothing gets 401", async () => {
    const k = await gw.newKey();
    for (const key of [undefined, k.key, "metrics-token-wrong-000000000"]) {
      const res = await gw.call("/metrics", key ? { key } : {});
      expect(res.status).toBe(401);
      expect(openAIError(res.body).code).toBe("invalid_metrics_token");
    }
    expect((await gw.call("/metrics", { key: METRICS_TOKEN })).status).toBe(200);
    expect((await gw.call("/metrics", { key: gw.masterKey })).status).toBe(200);
  });

  it("shows requests, latency, overhead, cache levels, invalidation lag, listener, breakers, rotations, spend and rejections after traffic", async () => {
    const k = await gw.newKey({ rpm_limit: 2 });
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("priced") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(429);
    expect((await gw.call("/v1/chat/completions", { key: "sk-not-a-key-000000", body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await gw.call("/v1/no-such-route", { key: "sk-not-a-key-000000", body: chatBody("mock-gpt") })).status).toBe(401);
    const rotated = await gw.newKey();
    expect((await gw.admin(`/key/${rotated.key}/regenerate`, { grace_period: "1h" })).status).toBe(200);
    expect((await gw.admin(`/key/${rotated.key}/regenerate`, {})).status).toBe(409);
    // Twice: the first call may join a periodic flush whose batch formed before the last charge.
    await gw.gateway.spendLedger.flush();
    await gw.gateway.spendLedger.flush();

    const res = await gw.call("/metrics", { key: METRICS_TOKEN });
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = res.text;
    expect(series(text, "gatehouse_requests_total", { route: "/v1/chat/completions", model: "mock-gpt", status: "200" })).toBeGreaterThanOrEqual(1);
    expect(series(text, "gatehouse_requests_total", { route: "/v1/chat/completions", status: "429" })).toBe(1);
    expect(series(text, "gatehouse_requests_total", { route: "/key/:key/regenerate", status: "200" })).toBe(1);
    expect(series(text, "gatehouse_request_duration_seconds_count", { route: "/v1/chat/completions" })).toBe(4);
    // An OpenAI route is known from its exact path before authentication: a 401 there carries its pattern.
    expect(series(text, "gatehouse_requests_total", { route: "/v1/chat/completions", status: "401" })).toBe(1);
    // Refused before a route matched (the auth middleware): labelled by the prefix, not the URL.
    expect(series(text, "gatehouse_requests_total", { route: "/v1/*", status: "401" })).toBe(1);
    expect(series(text, "gatehouse_overhead_duration_seconds_count", { route: "/v1/chat/completions" })).toBe(2);
    // The gateway's own time is a part of each answered request's latency, never more than it.
    const own = series(text, "gatehouse_overhead_duration_seconds_sum", { route: "/v1/chat/completions" }) ?? 0;
    expect(own).toBeGreaterThan(0);
    expect(own).toBeLessThan(series(text, "gatehouse_request_duration_seconds_sum", { route: "/v1/chat/completions" }) ?? 0);
    expect(series(text, "gatehouse_auth_cache_total", { level: "l1" })).toBeGreaterThanOrEqual(1);
    // The unknown key: refused by the token filter (or, while it is being built, by a database miss).
    expect((series(text, "gatehouse_auth_cache_total", { level: "miss" }) ?? 0) + (series(text, "gatehouse_auth_cache_total", { level: "filtered" }) ?? 0)).toBeGreaterThanOrEqual(
      1,
    );
    expect(series(text, "gatehouse_invalidation_lag_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(series(text, "gatehouse_events_replayed_total")).toBeGreaterThanOrEqual(0);
    expect(series(text, "gatehouse_listener_up")).toBe(1);
    expect(series(text, "gatehouse_breaker_state", { dependency: "postgres" })).toBe(0);
    expect(series(text, "gatehouse_breaker_state", { dependency: "redis" })).toBe(0);
    expect(series(text, "gatehouse_rotations_total", { outcome: "committed" })).toBe(1);
    expect(series(text, "gatehouse_rotations_total", { outcome: "conflict" })).toBe(1);
    expect(series(text, "gatehouse_spend_total")).toBeGreaterThan(0);
    expect(series(text, "gatehouse_limit_rejections_total", { reason: "rpm" })).toBe(1);
    expect(series(text, "gatehouse_limit_admissions_total", { path: "redis" })).toBeGreaterThanOrEqual(1);
    expect(series(text, "gatehouse_process_resident_memory_bytes")).toBeGreaterThan(0);
    // Counters kept by coherence and the limiter are exported too.
    for (const name of [
      "gatehouse_l1_drops_total",
      "gatehouse_catch_up_failures_total",
      "gatehouse_limit_settle_failures_total",
      "gatehouse_l2_forged_records_total",
      "gatehouse_unknown_keys_filtered_total",
    ])
      expect(text, name).toContain(`# TYPE ${name} counter`);
    // Route patterns, never URLs: paths carry keys.
    expect(text).not.toContain(rotated.key);
    expect(text).not.toContain(k.key);
  });
});

describe("docs/grafana-dashboard.json", () => {
  it("queries only series this replica exports", async () => {
    const { readFileSync } = await import("node:fs");
    const path = await import("node:path");
    const dashboard = JSON.parse(readFileSync(path.join(import.meta.dirname, "..", "docs", "grafana-dashboard.json"), "utf8"));
    const text = (await gw.call("/metrics", { key: METRICS_TOKEN })).text;
    const exported = new Set(
      [...text.matchAll(/^# TYPE (\w+) (\w+)/gm)].flatMap((m) =>
        m[2] === "histogram" ? [`${m[1]}_bucket`, `${m[1]}_sum`, `${m[1]}_count`] : m[2] === "summary" ? [`${m[1]}_sum`, `${m[1]}_count`, m[1]] : [m[1]],
      ),
    );
    const used = dashboard.panels.flatMap((p: any) => p.targets.flatMap((t: any) => [...t.expr.matchAll(/\b(gatehouse_\w+)/g)].map((m: any) => m[1])));
    expect(used.length).toBeGreaterThan(10);
    for (const name of used) expect(exported, name).toContain(name);
  });
});

describe("a histogram counted in plain numbers", () => {
  it("exposes exactly what prom-client's own histogram exposes for the same observations, merged across workers too", async () => {
    const buckets = [0.00001, 0.00005, 0.001, 0.1, 1];
    const observations = [0.000004, 0.00001, 0.00002, 0.00005, 0.0007, 0.3, 2, 5, 0];
    const counted = new Registry();
    const theirs = new Registry();
    const histogram = new CountedHistogram({ name: "probe_seconds", help: "a probe", buckets, registers: [counted] }, "route");
    const reference = new Histogram({ name: "probe_seconds", help: "a probe", labelNames: ["route"], buckets, registers: [theirs] });
    for (const [i, v] of observations.entries()) {
      const route = i % 2 === 0 ? "/a" : "/b";
      histogram.child(route).observe(v);
      reference.observe({ route }, v);
    }
    expect(await counted.metrics()).toBe(await theirs.metrics());
    // What the primary of --workers merges: each process's get(), summed.
    const merged = async (r: Registry) => await AggregatorRegistry.aggregate([await r.getMetricsAsJSON(), await r.getMetricsAsJSON()]).metrics();
    expect(await merged(counted)).toBe(await merged(theirs));
    counted.resetMetrics();
    theirs.resetMetrics();
    expect(await counted.metrics()).toBe(await theirs.metrics());
  });
});
