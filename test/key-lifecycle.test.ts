import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { chatBody, openAIError } from "./helpers/http.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("key lifecycle through the /key admin API", () => {
  it("generates a key whose plaintext is shown once and whose hash is what is stored", async () => {
    // A key may name only a team that exists (docs/teams.md).
    expect((await gw.admin("/team/new", { team_id: "t1" })).status).toBe(200);
    const res = await gw.admin("/key/generate", {
      key_alias: "team-a",
      models: ["mock-gpt"],
      max_budget: 10,
      duration: "30d",
      metadata: { owner: "a" },
      user_id: "u1",
      team_id: "t1",
      tpm_limit: 1000,
      rpm_limit: 60,
      max_parallel_requests: 4,
    });
    expect(res.status).toBe(200);
    const k = res.body;
    expect(k.key).toMatch(/^sk-[A-Za-z0-9_-]{32,}$/);
    expect(k.token).toBe(sha256(k.key));
    expect(k.key_name).toBe(`sk-...${k.key.slice(-4)}`);
    expect(k).toMatchObject({
      key_alias: "team-a",
      models: ["mock-gpt"],
      max_budget: 10,
      user_id: "u1",
      team_id: "t1",
      tpm_limit: 1000,
      rpm_limit: 60,
      max_parallel_requests: 4,
      metadata: { owner: "a" },
      blocked: false,
      spend: 0,
    });
    const expires = Date.parse(k.expires);
    expect(expires - Date.now()).toBeGreaterThan(29.9 * 86_400_000);
    expect(expires - Date.now()).toBeLessThan(30.1 * 86_400_000);

    const { rows } = await gw.gateway.pool.query("SELECT token FROM gh_keys WHERE key_alias = 'team-a'");
    expect(rows).toEqual([{ token: sha256(k.key) }]);
    const { rows: leaked } = await gw.gateway.pool.query("SELECT count(*)::int AS n FROM gh_keys WHERE row_to_json(gh_keys)::text LIKE '%' || $1 || '%'", [k.key]);
    expect(leaked[0].n).toBe(0);
  });

  it("answers /key/info by plaintext or by hash and never echoes the plaintext", async () => {
    const k = await gw.newKey({ key_alias: "info-me" });
    for (const ref of [k.key, k.token]) {
      const res = await gw.admin(`/key/info?key=${encodeURIComponent(ref)}`, undefined);
      expect(res.status).toBe(200);
      expect(res.body.key).toBe(k.token);
      expect(res.body.info).toMatchObject({ key_alias: "info-me", key_name: k.key_name });
      expect(res.text).not.toContain(k.key);
    }
  });

  it("accepts a custom key and refuses a duplicate key or alias with 409", async () => {
    const custom = "sk-my-custom-key-0001-0123456789abcdef0123";
    const a = await gw.admin("/key/generate", { key: custom, key_alias: "custom" });
    expect(a.status).toBe(200);
    expect(a.body.key).toBe(custom);
    const chat = await gw.call("/v1/chat/completions", { key: custom, body: chatBody("mock-gpt") });
    expect(chat.status).toBe(200);
    const again = await gw.admin("/key/generate", { key: custom });
    expect(again.status).toBe(409);
    expect(openAIError(again.body).code).toBe("key_exists");
    const alias = await gw.admin("/key/generate", { key_alias: "custom" });
    expect(alias.status).toBe(409);
    expect(openAIError(alias.body).param).toBe("key_alias");
  });

  it("updates fields, bumps the version and enforces the change at once on this replica", async () => {
    const k = await gw.newKey({ models: ["mock-gpt"] });
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-other") })).status).toBe(403);

    const upd = await gw.admin("/key/update", { key: k.key, models: ["mock-other"], metadata: { tier: "gold" }, max_budget: null });
    expect(upd.status).toBe(200);
    expect(upd.body).toMatchObject({ key: k.token, models: ["mock-other"], metadata: { tier: "gold" }, max_budget: null });
    expect(upd.body.version).toBeGreaterThan(k.version);
    expect(upd.text).not.toContain(k.key);

    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(403);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-other") })).status).toBe(200);
  });

  it("lists keys with paging and filters", async () => {
    for (let i = 0; i < 3; i++) await gw.newKey({ user_id: "lister", key_alias: `list-${i}` });
    const page1 = await gw.admin("/key/list?user_id=lister&size=2&page=1");
    expect(page1.status).toBe(200);
    expect(page1.body).toMatchObject({ total_count: 3, current_page: 1, total_pages: 2 });
    expect(page1.body.keys).toHaveLength(2);
    expect(page1.body.keys[0]).toMatch(/^[0-9a-f]{64}$/);
    const page2 = await gw.admin("/key/list?user_id=lister&size=2&page=2&return_full_object=true");
    expect(page2.body.keys).toHaveLength(1);
    // Newest first: the last page holds the first key made.
    expect(page2.body.keys[0]).toMatchObject({ user_id: "lister", key_alias: "list-0" });
    const byAlias = await gw.admin("/key/list?key_alias=list-1");
    expect(byAlias.body.total_count).toBe(1);
    expect((await gw.admin("/key/list?size=1000")).status).toBe(400);
  });

  it("blocks and unblocks a key", async () => {
    const k = await gw.newKey();
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
    const blocked = await gw.admin("/key/block", { key: k.key });
    expect(blocked.status).toBe(200);
    expect(blocked.body.blocked).toBe(true);
    const refused = await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") });
    expect(refused.status).toBe(401);
    expect(openAIError(refused.body).code).toBe("key_blocked");
    expect((await gw.admin("/key/unblock", { key: k.token })).body.blocked).toBe(false);
    expect((await gw.call("/v1/chat/completions", { key: k.key, body: chatBody("mock-gpt") })).status).toBe(200);
  });

  it("deletes by key or by alias, all or nothing", async () => {
    const a = await gw.newKey({ key_alias: "del-a" });
    const b = await gw.newKey({ key_alias: "del-b" });
    expect((await gw.call("/v1/chat/completions", { key: a.key, body: chatBody("mock-gpt") })).status).toBe(200);

    const partial = await gw.admin("/key/delete", { keys: [a.key, "sk-does-not-exist-000"] });
    expect(partial.status).toBe(404);
    expect(openAIError(partial.body).message).toContain("nothing was deleted");
    expect((await gw.admin(`/key/info?key=${a.token}`)).status).toBe(200);

    const del = await gw.admin("/key/delete", { keys: [a.key] });
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ deleted_keys: [a.key] });
    expect((await gw.call("/v1/chat/completions", { key: a.key, body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await gw.admin(`/key/info?key=${a.token}`)).status).toBe(404);

    const byAlias = await gw.admin("/key/delete", { key_aliases: ["del-b"] });
    expect(byAlias.status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: b.key, body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await gw.admin("/key/delete", { keys: [a.key], key_aliases: ["x"] })).status).toBe(400);
  });

  it("re-creating a deleted custom key works and is served fresh, not from a stale cache", async () => {
    const custom = "sk-recreated-key-0001-0123456789abcdef0123";
    await gw.admin("/key/generate", { key: custom, models: ["mock-gpt"] });
    expect((await gw.call("/v1/chat/completions", { key: custom, body: chatBody("mock-gpt") })).status).toBe(200);
    await gw.admin("/key/delete", { keys: [custom] });
    expect((await gw.call("/v1/chat/completions", { key: custom, body: chatBody("mock-gpt") })).status).toBe(401);
    expect((await gw.admin("/key/generate", { key: custom, models: ["mock-other"] })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: custom, body: chatBody("mock-other") })).status).toBe(200);
    expect((await gw.call("/v1/chat/completions", { key: custom, body: chatBody("mock-gpt") })).status).toBe(403);
  });
});
