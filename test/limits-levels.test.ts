import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";
import { costOf, pricedModel } from "./helpers/prices.js";

/**
 * Budgets and rate limits at every level a request belongs to — key, team member, user, team — held across
 * two real replica processes: one admission checks every level, a refusal names the level, spend is recorded
 * durably per level and /team/info, /user/info show it live. Prices are powers of two, so sums are exact.
 */

const config: ConfigFile = {
  model_list: [pricedModel("priced"), { model_name: "free", litellm_params: { model: "mock/free" } }],
  gatehouse_settings: { limits: { flush_interval_ms: 100 } },
};

let cluster: Cluster;
let A: Replica, B: Replica;

beforeAll(async () => {
  cluster = await startCluster({ size: 2, config });
  [A, B] = cluster.replicas as [Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

async function admin(route: string, body: Record<string, unknown>) {
  const res = await A.admin(route, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

let seq = 0;
const unique = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;

function chat(r: Replica, key: string, model = "priced") {
  return api(r.url, "/v1/chat/completions", { key, body: chatBody(model, { max_tokens: 1 }) });
}

/** The cost of one request like `chat`'s, measured on a key without limits. */
async function costPerRequest(): Promise<number> {
  const probe = await admin("/key/generate", {});
  const res = await chat(A, probe.key);
  expect(res.status).toBe(200);
  return costOf(res.body.usage);
}

/**
 * How each replica admitted requests so far (Redis, prefetched, local fallback) and its Redis breaker: printed
 * when a count of admitted requests is off, to tell a limiter fault from a test one.
 */
async function admissionPaths(): Promise<string> {
  const lines = await Promise.all(
    [A, B].map(async (r) => {
      const text: string = (await r.admin("/metrics")).text;
      const wanted = text.split("\n").filter((l) => /^gatehouse_(limit_admissions_total|breaker_state|limit_rejections_total)/.test(l));
      return `${r.name}: ${wanted.join("; ")}`;
    }),
  );
  return lines.join("\n");
}

/** Sends requests alternately through A and B until one is refused; returns the refusal and how many passed. */
async function spendUntilRefused(keys: string[], limit = 50) {
  for (let i = 0; i < limit; i++) {
    const res = await chat([A, B][i % 2]!, keys[i % keys.length]!);
    if (res.status !== 200) return { refusal: res, admitted: i };
  }
  throw new Error(`no refusal after ${limit} requests`);
}

describe("limits at every level, across two replicas", () => {
  it("a team budget is shared by the team's keys on every replica; the refusal names the team; the team's spend is durable and live", async () => {
    const perRequest = await costPerRequest();
    const team = await admin("/team/new", { team_id: unique("team"), max_budget: 4 * perRequest });
    const [k1, k2] = [await admin("/key/generate", { team_id: team.team_id }), await admin("/key/generate", { team_id: team.team_id })];
    await cluster.settle();

    const { refusal, admitted } = await spendUntilRefused([k1.key, k2.key]);
    expect(admitted, await admissionPaths()).toBe(4);
    expect(refusal.status).toBe(400);
    expect(openAIError(refusal.body)).toMatchObject({ type: "budget_exceeded", code: "budget_exceeded" });
    expect(refusal.body.error.message).toBe(`Budget has been exceeded! Team=${team.team_id} Current cost: ${4 * perRequest}, Max budget: ${4 * perRequest}`);
    // Both keys, on both replicas: the team has no room left, whatever key or replica asks.
    for (const r of [A, B]) for (const k of [k1, k2]) expect((await chat(r, k.key)).status).toBe(400);
    // A free model costs nothing, but a budget that is spent refuses every request, as for a key.
    expect((await chat(B, k1.key, "free")).status).toBe(400);

    // Live at once (Redis), durable once flushed: each key's spend and the team's agree.
    const info = (await B.admin(`/team/info?team_id=${team.team_id}`)).body;
    expect(info.team_info.spend).toBe(4 * perRequest);
    await waitFor(async () => (await B.admin(`/team/info?team_id=${team.team_id}`)).body.team_info.durable_spend === 4 * perRequest, {
      what: "the team's durable spend to be flushed",
    });
    const { rows } = await cluster.pool.query("SELECT sum(spend) AS total FROM gh_keys WHERE team_id = $1", [team.team_id]);
    expect(rows[0].total).toBe(4 * perRequest);
  });

  it("a user's budget holds for a key that also has a team (the user level is not skipped), and names the user", async () => {
    const perRequest = await costPerRequest();
    const team = await admin("/team/new", { team_id: unique("team") });
    const user = await admin("/user/new", { user_id: unique("user"), max_budget: 2 * perRequest, auto_create_key: false });
    const k = await admin("/key/generate", { team_id: team.team_id, user_id: user.user_id });
    await cluster.settle();

    const { refusal, admitted } = await spendUntilRefused([k.key]);
    expect(admitted, await admissionPaths()).toBe(2);
    expect(refusal.status).toBe(400);
    expect(refusal.body.error.message).toContain(`User=${user.user_id} `);
    expect((await B.admin(`/user/info?user_id=${user.user_id}`)).body.user_info.spend).toBe(2 * perRequest);
    await waitFor(async () => (await A.admin(`/user/info?user_id=${user.user_id}`)).body.user_info.durable_spend === 2 * perRequest, {
      what: "the user's durable spend to be flushed",
    });
  });

  it("a team member's budget (max_budget_in_team) limits that member's keys in the team, not the other members'", async () => {
    const perRequest = await costPerRequest();
    const team = await admin("/team/new", { team_id: unique("team") });
    const [alice, bob] = [unique("alice"), unique("bob")];
    await admin("/team/member_add", { team_id: team.team_id, member: [{ user_id: alice }, { user_id: bob }] });
    await admin("/team/member_update", { team_id: team.team_id, user_id: alice, max_budget_in_team: 3 * perRequest });
    const aliceKey = await admin("/key/generate", { team_id: team.team_id, user_id: alice });
    const bobKey = await admin("/key/generate", { team_id: team.team_id, user_id: bob });
    await cluster.settle();

    const { refusal, admitted } = await spendUntilRefused([aliceKey.key]);
    expect(admitted, await admissionPaths()).toBe(3);
    expect(refusal.body.error.message).toContain(`TeamMember=${alice} (Team=${team.team_id})`);
    for (const r of [A, B]) expect((await chat(r, bobKey.key)).status).toBe(200);

    const info = async () => (await B.admin(`/team/info?team_id=${team.team_id}`)).body;
    const membership = (body: any, userId: string) => body.team_memberships.find((m: { user_id: string }) => m.user_id === userId);
    expect(membership(await info(), alice)).toMatchObject({ max_budget_in_team: 3 * perRequest, spend: 3 * perRequest });
    await waitFor(async () => membership(await info(), bob).durable_spend === 2 * perRequest, { what: "bob's spend in the team to be flushed" });

    // Raising the member's budget is a team change: every replica admits alice again at once.
    await admin("/team/member_update", { team_id: team.team_id, user_id: alice, max_budget_in_team: 10 * perRequest });
    for (const r of [A, B]) await waitFor(async () => (await chat(r, aliceKey.key)).status === 200, { timeoutMs: 2_000, intervalMs: 5, what: `${r.name} to admit alice again` });
  });

  it("a team rpm limit counts the requests of all its keys; a refusal by the team holds nothing on the key", async () => {
    const team = await admin("/team/new", { team_id: unique("team"), rpm_limit: 3 });
    const k1 = await admin("/key/generate", { team_id: team.team_id, rpm_limit: 100 });
    const k2 = await admin("/key/generate", { team_id: team.team_id });
    await cluster.settle();

    const results = [];
    for (let i = 0; i < 6; i++) results.push(await chat([A, B][i % 2]!, [k1.key, k2.key][i % 2]!, "free"));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 429, 429, 429]);
    expect(openAIError(results[3]!.body).code).toBe("rate_limit_exceeded");
    expect(results[3]!.body.error.message).toContain(`this team allows 3 requests per minute. Team=${team.team_id}`);
    // The headers describe the level with the least left: the team, not the key.
    expect(results[0]!.headers.get("x-ratelimit-limit-requests")).toBe("3");

    // Lift the team's limit (one team event): k1's own minute holds only the two requests it was admitted for,
    // not the one the team refused.
    await admin("/team/update", { team_id: team.team_id, rpm_limit: null });
    await cluster.settle();
    const after = await chat(B, k1.key, "free");
    expect(after.status).toBe(200);
    expect(after.headers.get("x-ratelimit-limit-requests")).toBe("100");
    expect(after.headers.get("x-ratelimit-remaining-requests")).toBe(String(100 - 3));
  });

  it("a limit added to a team takes effect on every replica at once, for keys cached before", async () => {
    const team = await admin("/team/new", { team_id: unique("team") });
    const k = await admin("/key/generate", { team_id: team.team_id });
    await cluster.settle();
    for (const r of [A, B]) expect((await chat(r, k.key, "free")).status).toBe(200); // cached everywhere
    await admin("/team/update", { team_id: team.team_id, max_parallel_requests: 0 });
    for (const r of [A, B]) {
      await waitFor(async () => (await chat(r, k.key, "free")).status === 429, { timeoutMs: 2_000, intervalMs: 5, what: `${r.name} to apply the team's new limit` });
      expect((await chat(r, k.key, "free")).body.error.message).toContain(`Team=${team.team_id}`);
    }
  });

  it("/metrics counts refusals by the level that refused", async () => {
    const text = (await A.admin("/metrics")).body as string;
    expect(text).toMatch(/gatehouse_limit_rejections_total\{reason="budget",level="team"\} [1-9]/);
  });
});
