import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { keyChangeMeetsOwnerDelete } from "./helpers/lock-order.js";
import { waitFor } from "./helpers/services.js";

/**
 * Teams across 3 replica processes: a team's state applies to every key of it, on every replica, through one
 * event on the team's own cached record (docs/teams.md).
 */
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

async function newTeam(fields: Record<string, unknown> = {}) {
  const res = await A.admin("/team/new", fields);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { team_id: string; team_alias: string | null; models: string[] };
}

/** Every key answers `status` (and `code`, for a refusal) on every replica, within the propagation bound. */
async function everywhere(keys: string[], status: number, code?: string, model = "mock-gpt") {
  for (const r of cluster.replicas) {
    for (const key of keys) {
      await waitFor(
        async () => {
          const res = await api(r.url, "/v1/chat/completions", { key, body: chatBody(model) });
          return res.status === status && (code === undefined || openAIError(res.body).code === code);
        },
        { timeoutMs: 2_000, intervalMs: 10, what: `${r.name} to answer ${status}${code ? ` ${code}` : ""} for a key of the team` },
      );
    }
  }
}

/** The tokens the event with this id named (what every replica evicted). */
async function eventTokens(eventIds: string | null): Promise<string[][]> {
  const ids = (eventIds ?? "").split(",").filter(Boolean).map(Number);
  const { rows } = await cluster.pool.query("SELECT tokens FROM gh_key_events WHERE id = ANY($1::bigint[]) ORDER BY id", [ids]);
  return rows.map((r: { tokens: string[] }) => r.tokens);
}

describe("teams on 3 replicas", () => {
  it("blocking a team refuses every key of it on every replica, through one event naming only the team", async () => {
    const team = await newTeam({ team_alias: "blockers" });
    const keys = await Promise.all([A, B, C].map((r) => generateKey(r, { team_id: team.team_id })));
    await cluster.settle();
    // Cached everywhere first: the refusal must come from the team's event, not from a cold read.
    await everywhere(
      keys.map((k) => k.key),
      200,
    );

    const blocked = await B.admin("/team/block", { team_id: team.team_id });
    expect(blocked.status).toBe(200);
    expect(blocked.body.blocked).toBe(true);
    expect(await eventTokens(blocked.headers.get("gatehouse-event-id"))).toEqual([[`team:${team.team_id}`]]);
    await everywhere(
      keys.map((k) => k.key),
      401,
      "team_blocked",
    );
    const refused = await api(C.url, "/v1/chat/completions", { key: keys[0]!.key, body: chatBody("mock-gpt") });
    expect(openAIError(refused.body).message).toContain("'blockers'");

    expect((await C.admin("/team/unblock", { team_id: team.team_id })).status).toBe(200);
    await everywhere(
      keys.map((k) => k.key),
      200,
    );
  });

  it("narrowing a team's models refuses the removed model on every replica; a key without models inherits the team's", async () => {
    const team = await newTeam({ models: ["mock-gpt", "mock-other"] });
    const inherits = await generateKey(A, { team_id: team.team_id });
    const own = await generateKey(A, { team_id: team.team_id, models: ["mock-other"] });
    await cluster.settle();
    await everywhere([inherits.key], 200, undefined, "mock-other");
    await everywhere([own.key], 200, undefined, "mock-other");
    await everywhere([own.key], 403, "model_not_allowed", "mock-gpt");
    // A model the team does not allow is refused even to a key that names none.
    await everywhere([inherits.key], 403, "model_not_allowed", "mock-embedding");

    const narrowed = await C.admin("/team/update", { team_id: team.team_id, models: ["mock-gpt"] });
    expect(narrowed.status).toBe(200);
    expect(await eventTokens(narrowed.headers.get("gatehouse-event-id"))).toEqual([[`team:${team.team_id}`]]);
    await everywhere([inherits.key, own.key], 403, "model_not_allowed", "mock-other");
    await everywhere([inherits.key], 200, undefined, "mock-gpt");
    const models = await api(B.url, "/v1/models", { key: inherits.key });
    expect(models.body.data.map((m: { id: string }) => m.id)).toEqual(["mock-gpt"]);
  });

  it("deleting a team deletes its keys; keys cached anywhere refuse with team_deleted; the team id is never reused", async () => {
    const team = await newTeam({ team_id: "doomed-team" });
    const keys = await Promise.all([A, B].map((r) => generateKey(r, { team_id: team.team_id })));
    const outsider = await generateKey(A, {});
    await cluster.settle();
    await everywhere(
      keys.map((k) => k.key),
      200,
    );

    const deleted = await A.admin("/team/delete", { team_ids: [team.team_id] });
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ deleted_teams: ["doomed-team"], deleted_keys: 2 });
    expect(await eventTokens(deleted.headers.get("gatehouse-event-id"))).toEqual([["team:doomed-team"]]);
    await everywhere(
      keys.map((k) => k.key),
      401,
    );
    for (const r of cluster.replicas) {
      const res = await api(r.url, "/v1/chat/completions", { key: keys[0]!.key, body: chatBody("mock-gpt") });
      expect(["team_deleted", "invalid_api_key"]).toContain(openAIError(res.body).code);
    }
    await everywhere([outsider.key], 200);
    expect((await B.admin("/key/list?team_id=doomed-team")).body.keys).toEqual([]);
    expect((await B.admin("/team/info?team_id=doomed-team")).status).toBe(404);
    const again = await C.admin("/team/new", { team_id: "doomed-team" });
    expect(again.status).toBe(409);
    expect(openAIError(again.body).code).toBe("team_exists");
    expect((await C.admin("/key/generate", { team_id: "doomed-team" })).status).toBe(400);
  });

  it("a key names only a live team, and only models its team allows", async () => {
    const team = await newTeam({ models: ["mock-gpt"] });
    const missing = await A.admin("/key/generate", { team_id: "no-such-team" });
    expect(missing.status).toBe(400);
    expect(openAIError(missing.body)).toMatchObject({ code: "team_not_found", param: "team_id" });
    const outside = await A.admin("/key/generate", { team_id: team.team_id, models: ["mock-other"] });
    expect(outside.status).toBe(400);
    expect(openAIError(outside.body)).toMatchObject({ code: "model_not_in_team", param: "models" });
    const key = await generateKey(A, { team_id: team.team_id });
    expect((await A.admin("/key/update", { key: key.key, models: ["mock-other"] })).status).toBe(400);
    expect((await A.admin("/key/update", { key: key.key, team_id: "no-such-team" })).status).toBe(400);
    // Nothing was half-applied: the key is as it was.
    expect((await A.admin(`/key/info?key=${key.key}`)).body.info).toMatchObject({ team_id: team.team_id, models: [] });
  });

  it("a regenerated team key keeps its team, and its grace token follows the team's state", async () => {
    const team = await newTeam();
    const key = await generateKey(A, { team_id: team.team_id });
    const rotated = await B.admin(`/key/${key.key}/regenerate`, { grace_period: "1h" });
    expect(rotated.status).toBe(200);
    expect(rotated.body.team_id).toBe(team.team_id);
    await cluster.settle();
    await everywhere([key.key, rotated.body.key], 200);
    expect((await A.admin("/team/block", { team_id: team.team_id })).status).toBe(200);
    await everywhere([key.key, rotated.body.key], 401, "team_blocked");
    expect((await A.admin("/team/unblock", { team_id: team.team_id })).status).toBe(200);
    await everywhere([key.key, rotated.body.key], 200);
  });

  it("team info, list and members, in LiteLLM's shapes", async () => {
    const team = await newTeam({ team_alias: "shapes", max_budget: 10, members_with_roles: [{ user_id: "ann", role: "admin" }] });
    await generateKey(A, { team_id: team.team_id });
    const sameAlias = await A.admin("/team/new", { team_alias: "shapes" });
    expect(sameAlias.status).toBe(409);
    expect(openAIError(sameAlias.body).code).toBe("team_alias_exists");
    const added = await B.admin("/team/member_add", { team_id: team.team_id, member: [{ user_id: "bob" }, { user_email: "cy@example.com", role: "admin" }] });
    expect(added.status).toBe(200);
    expect(added.body.members_with_roles.map((m: { user_id: string; role: string }) => `${m.user_id}:${m.role}`)).toEqual(["ann:admin", "bob:user", "cy@example.com:admin"]);
    // A membership change is a team change (a member's budget is part of the team's record): one event.
    expect(added.headers.get("gatehouse-event-id")).toMatch(/^\d+$/);
    expect((await B.admin("/team/member_delete", { team_id: team.team_id, user_id: "bob" })).body.members_with_roles).toHaveLength(2);
    expect((await B.admin("/team/member_delete", { team_id: team.team_id, user_id: "bob" })).status).toBe(404);
    const info = await C.admin(`/team/info?team_id=${team.team_id}`);
    expect(info.status).toBe(200);
    expect(info.body).toMatchObject({ team_id: team.team_id, team_info: { team_alias: "shapes", max_budget: 10, blocked: false }, key_count: 1 });
    expect(info.body.keys).toHaveLength(1);
    expect(info.body.team_memberships).toEqual([
      { team_id: team.team_id, user_id: "ann", spend: 0, durable_spend: 0, max_budget_in_team: null },
      { team_id: team.team_id, user_id: "cy@example.com", spend: 0, durable_spend: 0, max_budget_in_team: null },
    ]);
    const list = await C.admin("/team/list");
    expect(list.body.map((t: { team_id: string }) => t.team_id)).toContain(team.team_id);
    expect((await C.admin("/team/update", { team_id: "nope", models: [] })).status).toBe(404);
    expect((await C.admin("/team/new", { team_alias: "bad", surprise: 1 })).status).toBe(400);
    // A virtual key is not an admin.
    const key = await generateKey(A, {});
    expect((await api(A.url, "/team/list", { key: key.key })).status).toBe(403);
  });

  it("a team's delete and a change of one of its keys, at once, both commit without a deadlock", async () => {
    // The key's change locks the key and then holds its team; the team's delete locks the team's keys before
    // the team (the order every change takes: keys, then their owners).
    const team = await newTeam({ team_id: "contended-team", models: ["mock-gpt", "mock-other"] });
    const key = await generateKey(B, { team_id: team.team_id, models: ["mock-gpt", "mock-other"] });
    const race = await keyChangeMeetsOwnerDelete(cluster, key, A, B, { path: "/team/delete", body: { team_ids: [team.team_id] } });
    expect(race.update.status).toBe(200);
    expect(race.deletion.body).toEqual({ deleted_teams: ["contended-team"], deleted_keys: 1 });
    expect(race.conflicts).toBe(0);
    await everywhere([key.key], 401);
  });
});
