import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { type api, chatBody, openAIError } from "./helpers/http.js";

let gw: TestGateway;
let userKey: string;
beforeAll(async () => {
  gw = await startTestGateway({
    config: {
      model_list: [{ model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } }],
      gatehouse_settings: { max_request_body_bytes: 64 * 1024 },
    },
  });
  userKey = (await gw.newKey()).key;
});
afterAll(async () => {
  await gw?.close();
});

async function expect4xx(res: Awaited<ReturnType<typeof api>>, status: number, code?: string) {
  expect(res.status, res.text).toBe(status);
  const e = openAIError(res.body);
  if (code) expect(e.code).toBe(code);
  return e;
}

describe("bad input gets a clear 4xx, never a 500, and the gateway keeps serving", () => {
  it("malformed JSON", async () => {
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, rawBody: '{"model": "mock-gpt",' }), 400, "invalid_json");
    await expect4xx(await gw.admin("/key/generate", undefined, { rawBody: "not json" }), 400, "invalid_json");
  });

  it("a body that is not an object, or not JSON at all", async () => {
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, rawBody: "[1,2]" }), 400);
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, rawBody: "hello", headers: { "content-type": "text/plain" } }), 400);
    await expect4xx(await gw.admin("/key/generate", undefined, { rawBody: '"str"' }), 400);
  });

  it("wrong types", async () => {
    const e1 = await expect4xx(await gw.admin("/key/generate", { max_budget: "ten" }), 400);
    expect(e1.param).toBe("max_budget");
    const e2 = await expect4xx(await gw.admin("/key/generate", { models: "mock-gpt" }), 400);
    expect(e2.param).toBe("models");
    await expect4xx(await gw.admin("/key/generate", { rpm_limit: 1.5 }), 400);
    await expect4xx(await gw.admin("/key/generate", { metadata: [1] }), 400);
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, body: { model: 42, messages: [] } }), 400, "missing_model");
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, body: chatBody("mock-gpt", { stream: "yes" }) }), 400);
    const unknown = await expect4xx(await gw.admin("/key/generate", { max_budgett: 5 }), 400);
    expect(unknown.message).toContain("max_budgett");
  });

  it("a body over the limit gets 413", async () => {
    const huge = chatBody("mock-gpt", { messages: [{ role: "user", content: "x".repeat(100 * 1024) }] });
    await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, body: huge }), 413, "request_too_large");
  });

  it("an unknown model: 404 on the proxy, 400 when put on a key", async () => {
    const e = await expect4xx(await gw.call("/v1/chat/completions", { key: userKey, body: chatBody("gpt-nonexistent") }), 404, "model_not_found");
    expect(e.param).toBe("model");
    await expect4xx(await gw.admin("/key/generate", { models: ["gpt-nonexistent"] }), 400, "model_not_found");
  });

  it("an unparseable or negative duration, and a negative budget", async () => {
    for (const duration of ["30x", "forever", "-5d", "", "1.5h", 30]) {
      const e = await expect4xx(await gw.admin("/key/generate", { duration }), 400);
      expect(e.param).toBe("duration");
    }
    await expect4xx(await gw.admin("/key/generate", { budget_duration: "fortnightly" }), 400);
    const e = await expect4xx(await gw.admin("/key/generate", { max_budget: -1 }), 400);
    expect(e.param).toBe("max_budget");
    const { rows } = await gw.gateway.pool.query("SELECT count(*)::int AS n FROM gh_keys");
    expect(rows[0].n).toBe(1); // only the key made in beforeAll: no bad request wrote anything
  });

  it("a bad update changes nothing", async () => {
    const k = await gw.newKey({ max_budget: 5 });
    await expect4xx(await gw.admin("/key/update", { key: k.key, max_budget: 7, duration: "soon" }), 400);
    expect((await gw.admin(`/key/info?key=${k.token}`)).body.info.max_budget).toBe(5);
    await expect4xx(await gw.admin("/key/update", { key: "sk-nope-nope-nope", max_budget: 1 }), 404, "key_not_found");
    await expect4xx(await gw.admin("/key/update", { max_budget: 1 }), 400);
  });

  it("a missing or wrong master key, and a virtual key on an admin route", async () => {
    await expect4xx(await gw.call("/key/generate", { body: {} }), 401);
    await expect4xx(await gw.call("/key/generate", { key: "sk-wrong-master-key", body: {} }), 401, "invalid_master_key");
    await expect4xx(await gw.call("/key/list", { key: userKey }), 403, "not_admin");
    await expect4xx(await gw.admin("/key/info"), 400);
    await expect4xx(await gw.admin("/key/info?key=sk-not-there-123"), 404);
  });

  it("unknown routes get an OpenAI-shaped 404", async () => {
    await expect4xx(await gw.call("/nope"), 404, "route_not_found");
  });

  it("after all of that the gateway still serves", async () => {
    const res = await gw.call("/v1/chat/completions", { key: userKey, body: chatBody("mock-gpt") });
    expect(res.status).toBe(200);
    expect(gw.logs.entries().filter((e) => e.level >= 50)).toEqual([]);
    expect(gw.logs.entries().some((e) => e.status >= 500)).toBe(false);
  });
});
