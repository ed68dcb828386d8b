import { describe, expect, it } from "vitest";
import type { ModelDeployment } from "../src/config/settings.js";
import { pino } from "pino";
import { DEFAULT_ROUTER_SETTINGS, type RouterSettings, routerSettingsFrom } from "../src/config/router-settings.js";
import { DeploymentLoad } from "../src/proxy/deployment-load.js";
import { ModelRouter } from "../src/proxy/model-router.js";
import { routingStrategy } from "../src/proxy/routing-strategy.js";
import { RedisKeys } from "../src/redis/key-names.js";

const deployment = (id: string, weight = 1, order = 1): ModelDeployment =>
  ({
    id,
    modelName: "m",
    weight,
    order,
    provider: "mock",
    upstreamModel: id,
    apiBase: undefined,
    apiKey: undefined,
    inputCostPerToken: 0,
    outputCostPerToken: 0,
    cacheReadCostPerToken: 0,
    cacheCreationCostPerToken: 0,
    timeoutMs: undefined,
  }) as ModelDeployment;

describe("the model router's order of deployments", () => {
  it("shares first choices by weight, spread evenly, the others following heaviest first", () => {
    const router = new ModelRouter([deployment("a", 3), deployment("b", 1), deployment("c", 1)]);
    const firsts = Array.from({ length: 10 }, () => router.pick("m")!.map((d) => d.id));
    expect(firsts.map((f) => f[0]).join("")).toBe("abacaabaca");
    for (const f of firsts) expect(f.slice().sort()).toEqual(["a", "b", "c"]);
    expect(firsts[1]).toEqual(["b", "a", "c"]);
  });

  it("puts a higher order after every deployment of a lower one", () => {
    const router = new ModelRouter([deployment("backup", 1, 2), deployment("x"), deployment("y")]);
    for (let i = 0; i < 4; i++) expect(router.pick("m")!.at(-1)!.id).toBe("backup");
    expect(router.pick("nope")).toBeUndefined();
  });
});

describe("routing strategies (LiteLLM's routing_strategy) order a model's first order group", () => {
  const priced = (id: string, input: number, order = 1) => ({ ...deployment(id, 1, order), inputCostPerToken: input, outputCostPerToken: input }) as ModelDeployment;
  const settings = (strategy: RouterSettings["strategy"], lowestLatencyBuffer = 0): RouterSettings => ({ ...DEFAULT_ROUTER_SETTINGS, strategy, lowestLatencyBuffer });
  const load = () => new DeploymentLoad({ redis: null, keys: new RedisKeys("t:"), logger: pino({ level: "silent" }) });
  const ids = (list: ModelDeployment[]) => list.map((d) => d.id).join("");

  it("simple-shuffle keeps the router's rotation", async () => {
    const list = [deployment("a"), deployment("b")];
    expect(await routingStrategy(settings("simple-shuffle"), load()).order(list)).toBe(list);
  });

  it("cost-based-routing: cheapest first, within the first order group only; equal prices keep the rotation", async () => {
    const s = routingStrategy(settings("cost-based-routing"), load());
    expect(ids(await s.order([priced("a", 3), priced("b", 1), priced("c", 2), priced("z", 0, 2)]))).toBe("bcaz");
    expect(ids(await s.order([priced("b", 1), priced("a", 1)]))).toBe("ba");
  });

  it("latency-based-routing: fastest first, never-measured first of all, those within the buffer share", async () => {
    const l = load();
    const s = routingStrategy(settings("latency-based-routing"), l);
    l.answeredIn("a", 300);
    l.answeredIn("b", 100);
    expect(ids(await s.order([deployment("a"), deployment("b")]))).toBe("ba");
    expect(ids(await s.order([deployment("a"), deployment("b"), deployment("new")]))).toBe("newba");
    // With a buffer of 2 (200 % of the fastest), 300 ms is within 100 ms's reach: the rotation decides.
    const buffered = routingStrategy(settings("latency-based-routing", 2), l);
    expect(ids(await buffered.order([deployment("a"), deployment("b")]))).toBe("ab");
  });

  it("least-busy: fewest calls in flight first (this replica's own counts without Redis)", async () => {
    const l = load();
    const s = routingStrategy(settings("least-busy"), l);
    expect(s.tracksLoad).toBe(true);
    l.began("a");
    l.began("a");
    l.began("b");
    expect(ids(await s.order([deployment("a"), deployment("b"), deployment("c")]))).toBe("cba");
    l.ended("a");
    l.ended("a");
    expect(ids(await s.order([deployment("b"), deployment("a"), deployment("c")]))).toBe("acb");
  });

  it("usage-based-routing is v2, and tracks load", () => {
    const s = routingStrategy(routerSettingsFrom({ routing_strategy: "usage-based-routing" }), load());
    expect(s.name).toBe("usage-based-routing-v2");
    expect(s.tracksLoad).toBe(true);
  });
});
