import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

describe("what a key may do is checked on every request", () => {
  it("a key limited to some models gets 403 for the others and sees only its models in /v1/models", async () => {
    const k = await gw.newKey({ models: ["mock-gpt", "mock-embedding"] });
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
    const denied = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-other") });
    expect(denied.status).toBe(403);
    expect(openAIError(denied.body)).toMatchObject({ type: "permission_error", code: "model_not_allowed", param: "model" });
    const models = await gw.call("/v1/models", { key: k.key });
    expect(models.status).toBe(200);
    expect(models.body.data.map((m: any) => m.id).sort()).toEqual(["mock-embedding", "mock-gpt"]);
  });

  it("a key with no model list may use every model", async () => {
    const k = await gw.newKey();
    const models = await gw.call("/v1/models", { key: k.key });
    expect(models.body.data.map((m: any) => m.id).sort()).toEqual(["mock-embedding", "mock-gpt", "mock-other"]);
    const all = await gw.newKey({ models: ["all-proxy-models"] });
    expect((await gw.call("/v1/chat/completions", { key: all.key, body: chatBody("mock-other") })).status).toBe(200);
  });

  it("an expired key is refused although its record is still in L1", async () => {
    const k = await gw.newKey({ duration: "2s" });
    const ok = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") });
    expect(ok.status).toBe(200);
    expect(gw.gateway.l1.get(k.token)?.record).toBeTruthy();
    const refused = await waitFor(
      async () => {
        const r = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") });
        return r.status === 401 ? r : undefined;
      },
      { timeoutMs: 5_000, what: "the key to expire" },
    );
    expect(openAIError(refused.body).code).toBe("key_expired");
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(k.expires));
    // Still cached: the refusal came from the clock check, not from an expiring cache entry.
    expect(gw.gateway.l1.get(k.token)?.record).toBeTruthy();
  });

  it("extending an expired key with /key/update makes it usable again", async () => {
    const k = await gw.newKey({ duration: "1s" });
    await waitFor(async () => (await gw.call("/v1/models", { key: k.key })).status === 401, { what: "expiry" });
    expect((await gw.admin("/key/update", { key: k.key, duration: "1h" })).status).toBe(200);
    expect((await gw.call("/v1/models", { key: k.key })).status).toBe(200);
  });

  it("missing, malformed and unknown bearers get 401 with the OpenAI error shape", async () => {
    const none = await gw.call("/v1/chat/completions", { body: chatBody("mock-gpt") });
    expect(none.status).toBe(401);
    expect(openAIError(none.body).type).toBe("authentication_error");
    const bad = await gw.call("/v1/chat/completions", { body: chatBody("mock-gpt"), headers: { authorization: "Basic abc" } });
    expect(bad.status).toBe(401);
    const unknown = await gw.call("/v1/chat/completions", { key: "sk-unknown-key-0000", body: chatBody("mock-gpt") });
    expect(unknown.status).toBe(401);
    expect(openAIError(unknown.body).code).toBe("invalid_api_key");
  });

  it("the master key may call models (as LiteLLM allows), under an identity of its own", async () => {
    const res = await gw.call("/v1/chat/completions", { key: gw.masterKey, body: chatBody("mock-gpt") });
    expect(res.status).toBe(200);
  });
});
