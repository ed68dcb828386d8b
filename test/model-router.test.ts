import { describe, expect, it } from "vitest";
import type { ModelDeployment } from "../src/config/settings.js";
import { ModelRouter } from "../src/proxy/model-router.js";

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
