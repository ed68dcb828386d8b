import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { keyChangeMeetsOwnerDelete } from "./helpers/lock-order.js";
import { waitFor } from "./helpers/services.js";

/** Users across 3 replica processes: one event per user change, whatever the number of their keys (docs/users.md). */
let cluster: Cluster;
let A: Replica;
let B: Replica;
let C: Replica;

beforeAll(async () => {
  cluster = await startCluster({ size: 3 });
  [A, B, C] = cluster.replicas as [Replica, Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

async function everywhere(keys: string[], status: number, model = "mock-gpt") {
  for (const r of cluster.replicas) {
    for (const key of keys) {
      await waitFor(async () => (await api(r.url, "/v1/chat/completions", { key, body: chatBody(model) })).status === status, {
        timeoutMs: 2_000,
        intervalMs: 10,
        what: `${r.name} to answer ${status} for ${model}`,
      });
    }
  }
}

async function eventTokens(header: string | null): Promise<string[][]> {
  const ids = (header ?? "").split(",").filter(Boolean).map(Number);
  const { rows } = await cluster.pool.query("SELECT tokens FROM gh_key_events WHERE id = ANY($1::bigint[]) ORDER BY id", [ids]);
  return rows.map((r: { tokens: string[] }) => r.tokens);
}

describe("users on 3 replicas", () => {
  it("/user/new creates the user and, as LiteLLM does, a key of theirs that works on every replica", async () => {
    const res = await B.admin("/user/new", { user_email: "ann@example.com" });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.key).toMatch(/^sk-/);
    await everywhere([res.body.key], 200);
    const info = await C.admin(`/user/info?user_id=${res.body.user_id}`);
    expect(info.body).toMatchObject({ user_id: res.body.user_id, user_info: { user_email: "ann@example.com" }, key_count: 1 });
    const none = await B.admin("/user/new", { user_id: "no-key-user", auto_create_key: false });
    expect(none.body.key).toBeUndefined();
  });

  it("a key of an implicit user follows the user once created, and each narrowing of their models, on every replica", async () => {
    const key = await generateKey(A, { user_id: "implicit-user" });
    await cluster.settle();
    // Cached everywhere, with "no such user" cached too.
    await everywhere([key.key], 200, "mock-gpt");
    const created = await C.admin("/user/new", { user_id: "implicit-user", models: ["mock-other"], auto_create_key: false });
    expect(created.status).toBe(200);
    expect(await eventTokens(created.headers.get("gatehouse-event-id"))).toEqual([["user:implicit-user"]]);
    await everywhere([key.key], 403, "mock-gpt");
    await everywhere([key.key], 200, "mock-other");

    const widened = await B.admin("/user/update", { user_id: "implicit-user", models: [] });
    expect(await eventTokens(widened.headers.get("gatehouse-event-id"))).toEqual([["user:implicit-user"]]);
    await everywhere([key.key], 200, "mock-gpt");
    // A key may not be given a model its user may not use.
    await B.admin("/user/update", { user_id: "implicit-user", models: ["mock-gpt"] });
    const refused = await A.admin("/key/update", { key: key.key, models: ["mock-other"] });
    expect(refused.status).toBe(400);
    expect(openAIError(refused.body).code).toBe("model_not_allowed_for_user");
  });

  it("deleting a user deletes their keys; keys cached anywhere refuse; the id is never reused", async () => {
    const user = await A.admin("/user/new", { user_id: "leaving-user" });
    const second = await generateKey(B, { user_id: "leaving-user" });
    await cluster.settle();
    await everywhere([user.body.key, second.key], 200);
    const deleted = await C.admin("/user/delete", { user_ids: ["leaving-user"] });
    expect(deleted.body).toEqual({ deleted_users: ["leaving-user"], deleted_keys: 2 });
    expect(await eventTokens(deleted.headers.get("gatehouse-event-id"))).toEqual([["user:leaving-user"]]);
    await everywhere([user.body.key, second.key], 401);
    expect((await A.admin("/user/new", { user_id: "leaving-user" })).status).toBe(409);
    const again = await A.admin("/key/generate", { user_id: "leaving-user" });
    expect(again.status).toBe(400);
    expect(openAIError(again.body).code).toBe("user_deleted");
    expect((await A.admin("/user/info?user_id=leaving-user")).status).toBe(404);
    const list = await A.admin("/user/list?page_size=100");
    expect(list.body.users.map((u: { user_id: string }) => u.user_id)).not.toContain("leaving-user");
    expect((await A.admin("/user/delete", { user_ids: ["nobody"] })).status).toBe(404);
  });

  it("a user's delete and a change of one of their keys, at once, both commit without a deadlock", async () => {
    // The key's change locks the key and then holds its user (the user's models bound the key's); the user's
    // delete locks the user's keys before the user. The other way round, the two waited on each other until
    // Postgres broke the deadlock, a second later, and a change caught in it during an outage answered 500.
    await A.admin("/user/new", { user_id: "contended-user", models: ["mock-gpt", "mock-other"], auto_create_key: false });
    const key = await generateKey(B, { user_id: "contended-user", models: ["mock-gpt", "mock-other"] });
    const race = await keyChangeMeetsOwnerDelete(cluster, key, A, B, { path: "/user/delete", body: { user_ids: ["contended-user"] } });
    expect(race.update.status).toBe(200);
    expect(race.deletion.body).toEqual({ deleted_users: ["contended-user"], deleted_keys: 1 });
    expect(race.conflicts).toBe(0);
    await everywhere([key.key], 401);
  });
});
