import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_TEST_CONFIG, startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";
import { openAIError, type ApiResponse } from "./helpers/http.js";
import { resetBudgetPeriod } from "../src/store/spend-store.js";

/**
 * A zero budget period divided by zero at every reset, and since the sweeper reset due keys in one loop
 * that threw on the first bad row, one such key stopped every other key's budget from ever resetting.
 * Durations past Postgres's interval range were a 500. Both are now refused on write (a 400 naming the
 * field), and the sweeper skips a bad row that got into the table some other way.
 */

let gw: TestGateway;
beforeAll(async () => {
  // The background sweep is pushed out of the way: these tests run sweepOnce() themselves.
  gw = await startTestGateway({
    config: {
      ...DEFAULT_TEST_CONFIG,
      model_list: [...DEFAULT_TEST_CONFIG.model_list, { model_name: "priced", litellm_params: { model: "mock/priced", input_cost_per_token: 0.5, output_cost_per_token: 0.5 } }],
      gatehouse_settings: { upkeep: { sweep_interval_ms: 3_600_000 } },
    },
  });
});
afterAll(async () => {
  await gw?.close();
});

function expectRefused(res: ApiResponse, param: string) {
  expect(res.status, res.text).toBe(400);
  const e = openAIError(res.body);
  expect(e.type).toBe("invalid_request_error");
  expect(e.param).toBe(param);
  expect(e.message).toContain(param);
  return e;
}

async function keyCount(): Promise<number> {
  const { rows } = await gw.gateway.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM gh_keys");
  return rows[0]!.n;
}

async function keyRow(token: string) {
  const { rows } = await gw.gateway.pool.query("SELECT key_id, spend, spend_generation, budget_duration, budget_reset_at, expires FROM gh_keys WHERE token = $1", [token]);
  return rows[0];
}

describe("key durations: zero and out-of-range values are a 400 naming the field, and nothing is written", () => {
  it('/key/generate refuses budget_duration "0s" and duration "0s" and creates no key', async () => {
    const before = await keyCount();
    const budget = expectRefused(await gw.admin("/key/generate", { max_budget: 10, budget_duration: "0s" }), "budget_duration");
    expect(budget.message).toMatch(/zero/);
    expectRefused(await gw.admin("/key/generate", { budget_duration: "0d" }), "budget_duration");
    expectRefused(await gw.admin("/key/generate", { duration: "0s" }), "duration");
    expect(await keyCount()).toBe(before);
  });

  it('/key/update refuses budget_duration "0s" and duration "0s" and leaves the key as it was', async () => {
    const k = await gw.newKey({ max_budget: 10, budget_duration: "30d", duration: "7d" });
    const before = await keyRow(k.token);
    expectRefused(await gw.admin("/key/update", { key: k.key, budget_duration: "0s" }), "budget_duration");
    expectRefused(await gw.admin("/key/update", { key: k.key, duration: "0s" }), "duration");
    expect(await keyRow(k.token)).toEqual(before);
  });

  it('"999999999d" (past Postgres\'s interval range) is a 400, not a 500; the cap is 100 years (36500d)', async () => {
    const before = await keyCount();
    const budget = expectRefused(await gw.admin("/key/generate", { budget_duration: "999999999d" }), "budget_duration");
    expect(budget.message).toMatch(/36500d/);
    expectRefused(await gw.admin("/key/generate", { duration: "999999999d" }), "duration");
    expectRefused(await gw.admin("/key/generate", { budget_duration: "36501d" }), "budget_duration");
    expect(await keyCount()).toBe(before);

    const k = await gw.newKey({ max_budget: 10 });
    expectRefused(await gw.admin("/key/update", { key: k.key, budget_duration: "999999999d" }), "budget_duration");
    expectRefused(await gw.admin("/key/update", { key: k.key, duration: "999999999d" }), "duration");

    // Exactly the cap is fine.
    const longest = await gw.admin("/key/generate", { max_budget: 10, budget_duration: "36500d", duration: "36500d" });
    expect(longest.status, longest.text).toBe(200);
  });
});

describe("the budget sweep survives one bad row", () => {
  it("a key whose budget_duration was set to '0s' by hand is skipped (logged by key_id), and the other due key still resets", async () => {
    const bad = await gw.newKey({ max_budget: 10, budget_duration: "1d" });
    const good = await gw.newKey({ max_budget: 10, budget_duration: "1d" });
    // The bad row is due first, so a sweep that stopped at it would never reach the good one.
    await gw.gateway.pool.query("UPDATE gh_keys SET budget_duration = '0s', budget_reset_at = now() - interval '2 hours', spend = 3 WHERE token = $1", [bad.token]);
    await gw.gateway.pool.query("UPDATE gh_keys SET budget_reset_at = now() - interval '1 hour', spend = 4 WHERE token = $1", [good.token]);
    const goodBefore = await keyRow(good.token);
    const badBefore = await keyRow(bad.token);

    const result = await gw.gateway.sweeper.sweepOnce();
    expect(result.budgetsReset).toBe(1);

    const goodAfter = await keyRow(good.token);
    expect(goodAfter.spend).toBe(0);
    expect(goodAfter.spend_generation).toBe(goodBefore.spend_generation + 1);
    expect(goodAfter.budget_reset_at.getTime()).toBeGreaterThan(Date.now());
    expect(await keyRow(bad.token)).toEqual(badBefore); // skipped, untouched

    const warnings = gw.logs.entries().filter((e) => e.level === 40 && e.key_id === bad.key_id);
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    const logText = gw.logs.lines.join("\n");
    expect(logText).not.toContain(bad.token);
    expect(logText).not.toContain(bad.key);

    // The bad row stays due; later sweeps keep skipping it without throwing.
    await expect(gw.gateway.sweeper.sweepOnce()).resolves.toMatchObject({ budgetsReset: 0 });
  });

  it("resetBudgetPeriod with a zero duration changes nothing instead of dividing by zero", async () => {
    const k = await gw.newKey({ max_budget: 10, budget_duration: "1d" });
    await gw.gateway.pool.query("UPDATE gh_keys SET budget_reset_at = now() - interval '1 hour', spend = 2 WHERE token = $1", [k.token]);
    const before = await keyRow(k.token);
    await expect(resetBudgetPeriod(gw.gateway.pool, "key", before.key_id, { ms: 0 })).resolves.toBeNull();
    await expect(resetBudgetPeriod(gw.gateway.pool, "key", before.key_id, { months: 0 })).resolves.toBeNull();
    expect(await keyRow(k.token)).toEqual(before);
  });
});

describe("teams and users reset their budget periods like keys", () => {
  it("a spent team budget and a spent user budget reset when their period ends: spend 0, a new generation, the key admitted again", async () => {
    const team = (await gw.admin("/team/new", { max_budget: 1, budget_duration: "1d" })).body;
    const user = (await gw.admin("/user/new", { max_budget: 1, budget_duration: "1d", auto_create_key: false })).body;
    const k = await gw.newKey({ team_id: team.team_id, user_id: user.user_id });
    const chat = () => gw.call("/v1/chat/completions", { key: k.key, body: { model: "priced", messages: [{ role: "user", content: "hi" }], max_tokens: 1 } });
    expect((await chat()).status).toBe(200); // costs more than 1: both budgets are spent
    const refused = await chat();
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain("User="); // the user is checked before the team
    // Twice: the first call may join a periodic flush whose batch formed before the last charge.
    await gw.gateway.spendLedger.flush();
    await gw.gateway.spendLedger.flush();

    const rows = async () => ({
      team: (await gw.gateway.pool.query("SELECT spend, spend_generation FROM gh_teams WHERE team_id = $1", [team.team_id])).rows[0],
      user: (await gw.gateway.pool.query("SELECT spend, spend_generation FROM gh_users WHERE user_id = $1", [user.user_id])).rows[0],
    });
    const before = await rows();
    expect(before.team.spend).toBeGreaterThan(1);
    expect(before.user.spend).toBe(before.team.spend);
    await gw.gateway.pool.query("UPDATE gh_teams SET budget_reset_at = now() - interval '1 second' WHERE team_id = $1", [team.team_id]);
    await gw.gateway.pool.query("UPDATE gh_users SET budget_reset_at = now() - interval '1 second' WHERE user_id = $1", [user.user_id]);
    // (Keys of the tests above may be due too: at least the team and the user.)
    expect((await gw.gateway.sweeper.sweepOnce()).budgetsReset).toBeGreaterThanOrEqual(2);

    const after = await rows();
    expect(after.team).toEqual({ spend: 0, spend_generation: before.team.spend_generation + 1 });
    expect(after.user).toEqual({ spend: 0, spend_generation: before.user.spend_generation + 1 });
    // The live ledgers were dropped with the reset: the next request is seeded from the new period.
    expect((await chat()).status).toBe(200);
    expect((await gw.admin(`/team/info?team_id=${team.team_id}`)).body.team_info.spend).toBeGreaterThan(0);
  });
});
