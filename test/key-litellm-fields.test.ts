import { createHmac } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigFile } from "../src/config/settings.js";
import { type Cluster, type Replica, startCluster } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { costOf, pricedModel } from "./helpers/prices.js";
import { waitFor } from "./helpers/services.js";

/**
 * LiteLLM's per-key fields (docs/keys.md, "LiteLLM's per-key fields"), on two replica processes: each one is either
 * enforced — per-model budgets with their own period, per-model rate limits, aliases, enforced parameters, tags,
 * soft budgets, LiteLLM's budget periods — or refused with a 400 that names it. None is accepted and dropped.
 */
const WEBHOOK_SECRET = "whsec-test-0123456789abcdef";

let cluster: Cluster;
let A: Replica, B: Replica;
/** Alerts the webhook receiver got: body, and whether its signature checked out. */
const alerts: Array<{ body: any; signed: boolean }> = [];
let receiver: http.Server;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const [t, v1] = String(req.headers["gatehouse-signature"])
        .split(",")
        .map((p) => p.slice(p.indexOf("=") + 1));
      const signed = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${text}`).digest("hex") === v1 && Math.abs(Date.now() / 1000 - Number(t)) < 300;
      alerts.push({ body: JSON.parse(text), signed });
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const config: ConfigFile = {
    model_list: [pricedModel("priced"), { model_name: "free", litellm_params: { model: "mock/free" } }],
    gatehouse_settings: {
      limits: { flush_interval_ms: 100 },
      upkeep: { sweep_interval_ms: 200 },
      alerting: { webhook_url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/gatehouse`, webhook_secret: WEBHOOK_SECRET },
    },
  };
  cluster = await startCluster({ size: 2, config });
  [A, B] = cluster.replicas as [Replica, Replica];
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

async function generate(body: Record<string, unknown>) {
  const res = await A.admin("/key/generate", body);
  expect(res.status, res.text).toBe(200);
  return res.body;
}

const chat = (r: Replica, key: string, model: string, extra: Record<string, unknown> = {}) =>
  api(r.url, "/v1/chat/completions", { key, body: chatBody(model, { max_tokens: 1, ...extra }) });

describe("LiteLLM key fields Gatehouse does not support", () => {
  it.each([
    ["config", { a: 1 }],
    ["permissions", { pii_masking: true }],
    ["guardrails", ["g1"]],
    ["key_type", "management"],
    ["allowed_routes", ["/key/generate"]],
    ["organization_id", "org-1"],
    ["budget_id", "tier-1"],
    ["rpm_limit_type", "guaranteed_throughput"],
    ["object_permission", { vector_stores: ["v"] }],
    ["allowed_cache_controls", ["no-cache"]],
    ["send_invite_email", true],
  ])("%s is refused with a 400 naming it, on generate and update; nothing is created or changed", async (field, value) => {
    const before = (await cluster.pool.query("SELECT count(*)::int AS n FROM gh_keys")).rows[0].n;
    const res = await A.admin("/key/generate", { [field]: value });
    expect(res.status).toBe(400);
    expect(openAIError(res.body)).toMatchObject({ param: field });
    expect(res.body.error.message).toContain("not support");
    expect((await cluster.pool.query("SELECT count(*)::int AS n FROM gh_keys")).rows[0].n).toBe(before);
    const k = await generate({});
    const update = await B.admin("/key/update", { key: k.key, [field]: value });
    expect(update.status).toBe(400);
    expect(update.body.error.param).toBe(field);
  });

  it("values that ask for nothing (null, [], {}, false, LiteLLM's defaults) are accepted: clients send them unprompted", async () => {
    await generate({
      config: {},
      permissions: {},
      guardrails: [],
      key_type: "default",
      allowed_routes: [],
      send_invite_email: false,
      organization_id: null,
      allowed_cache_controls: [],
    });
  });
});

describe("LiteLLM key fields Gatehouse enforces", () => {
  it("round-trips every honoured field through /key/info", async () => {
    const k = await generate({
      tags: ["team-a", "prod"],
      aliases: { "my-gpt": "priced" },
      enforced_params: ["user"],
      soft_budget: 1.5,
      model_max_budget: { priced: { budget_limit: 2, time_period: "1mo" }, free: 3 },
      model_rpm_limit: { priced: 10 },
      model_tpm_limit: { priced: 10_000 },
      budget_duration: "1mo",
    });
    const info = (await B.admin(`/key/info?key=${k.key}`)).body.info;
    expect(info).toMatchObject({
      tags: ["team-a", "prod"],
      aliases: { "my-gpt": "priced" },
      enforced_params: ["user"],
      soft_budget: 1.5,
      model_max_budget: { priced: { budget_limit: 2, time_period: "1mo" }, free: { budget_limit: 3, time_period: null } },
      model_rpm_limit: { priced: 10 },
      model_tpm_limit: { priced: 10_000 },
      budget_duration: "1mo",
    });
    // A calendar month ahead (28 to 31 days), by the database's clock.
    const days = (new Date(info.budget_reset_at).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(27.9);
    expect(days).toBeLessThan(31.1);
  });

  it("LiteLLM's budget periods: 1mo, monthly, daily; anything else is a 400 naming the field", async () => {
    const monthly = await generate({ budget_duration: "monthly", max_budget: 1 });
    const info = (await A.admin(`/key/info?key=${monthly.key}`)).body.info;
    expect((new Date(info.budget_reset_at).getTime() - Date.now()) / 86_400_000).toBeCloseTo(30, 0);
    await generate({ budget_duration: "daily", max_budget: 1 });
    for (const bad of ["1y", "0mo", "month", "30"]) {
      const res = await A.admin("/key/generate", { budget_duration: bad });
      expect(res.status, bad).toBe(400);
      expect(res.body.error.param).toBe("budget_duration");
    }
    const team = await A.admin("/team/new", { budget_duration: "2mo", max_budget: 5 });
    expect(team.status, team.text).toBe(200);
  });

  it("a calendar-month budget period resets to the same day of the next month", async () => {
    const k = await generate({ budget_duration: "1mo", max_budget: 1 });
    // The period ended a day ago: the next one ends a calendar month after it ended, not 30 days.
    await cluster.pool.query("UPDATE gh_keys SET budget_reset_at = now() - interval '1 day', spend = 0.5 WHERE key_id = $1", [k.key_id]);
    const { rows } = await cluster.pool.query("SELECT budget_reset_at AS was FROM gh_keys WHERE key_id = $1", [k.key_id]);
    const was: Date = rows[0].was;
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [k.key_id])).rows[0].spend === 0, { what: "the sweeper to reset it" });
    const next: Date = (await cluster.pool.query("SELECT budget_reset_at FROM gh_keys WHERE key_id = $1", [k.key_id])).rows[0].budget_reset_at;
    const expected = (await cluster.pool.query("SELECT ($1::timestamptz + interval '1 month') AS t", [was])).rows[0].t as Date;
    expect(next.toISOString()).toBe(expected.toISOString());
  });

  it("model_rpm_limit holds for that model across replicas; other models are not limited by it", async () => {
    const k = await generate({ model_rpm_limit: { priced: 3 } });
    await cluster.settle();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await chat([A, B][i % 2]!, k.key, "priced"));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    expect(answers[3]!.body.error.code).toBe("rate_limit_exceeded");
    expect(answers[3]!.body.error.message).toContain("Model=priced");
    for (let i = 0; i < 5; i++) expect((await chat([A, B][i % 2]!, k.key, "free")).status).toBe(200);
  });

  it("model_max_budget holds for that model across replicas, is spent durably per model, and resets with its own period", async () => {
    const probe = await generate({});
    const cost = costOf((await chat(A, probe.key, "priced")).body.usage);
    const k = await generate({ model_max_budget: { priced: { budget_limit: 2 * cost, time_period: "1d" } } });
    await cluster.settle();
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await chat([A, B][i % 2]!, k.key, "priced")).status);
    expect(statuses).toEqual([200, 200, 400, 400]);
    const refusal = await chat(A, k.key, "priced");
    expect(refusal.body.error.type).toBe("budget_exceeded");
    expect(refusal.body.error.message).toContain(`Key=${k.key_id} Model=priced`);
    // Another model is not held to that model's budget.
    expect((await chat(B, k.key, "free")).status).toBe(200);
    // Durable, per key and model, with the period started by the first charge.
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_key_model_spend WHERE key_id = $1 AND model = 'priced'", [k.key_id])).rows[0]?.spend === 2 * cost, {
      what: "the model's spend to be flushed",
    });
    const row = (await cluster.pool.query("SELECT budget_reset_at > now() + interval '23 hours' AS later FROM gh_key_model_spend WHERE key_id = $1", [k.key_id])).rows[0];
    expect(row.later).toBe(true);
    // The period ends (moved into the past here): the sweeper starts a new one and every replica admits again.
    await cluster.pool.query("UPDATE gh_key_model_spend SET budget_reset_at = now() - interval '1 second' WHERE key_id = $1", [k.key_id]);
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_key_model_spend WHERE key_id = $1", [k.key_id])).rows[0].spend === 0, {
      what: "the period to reset",
    });
    await waitFor(async () => (await chat(B, k.key, "priced")).status === 200, { what: "B to admit the model again" });
  });

  it("aliases: a key's clients may ask for the alias and are served the model it names; a target not served is a 400", async () => {
    const k = await generate({ aliases: { "gpt-4-house": "free" } });
    await cluster.settle();
    const res = await chat(B, k.key, "gpt-4-house");
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get("gatehouse-deployment")).toBeTruthy();
    const other = await generate({});
    expect((await chat(B, other.key, "gpt-4-house")).status).toBe(404);
    const bad = await A.admin("/key/generate", { aliases: { x: "no-such-model" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("aliases");
  });

  it("tags: the key's are copied into its spend logs, before the request's own", async () => {
    const k = await generate({ tags: ["team-a", "prod"] });
    await cluster.settle();
    expect((await chat(B, k.key, "free", { metadata: { tags: ["req", "prod"] } })).status).toBe(200);
    await waitFor(async () => (await A.admin(`/spend/logs?key_id=${k.key_id}`)).body.length === 1, { what: "the spend log row" });
    expect((await A.admin(`/spend/logs?key_id=${k.key_id}`)).body[0].request_tags).toEqual(["team-a", "prod", "req"]);
  });

  it("soft_budget: crossing it is told once per budget period — a log line, a metric, a signed webhook — and refuses nothing", async () => {
    const probe = await generate({});
    const cost = costOf((await chat(A, probe.key, "priced")).body.usage);
    const k = await generate({ soft_budget: 1.5 * cost, max_budget: 10 * cost });
    await cluster.settle();
    // Two requests cross it (on either replica); a third and a fourth go on being served.
    for (let i = 0; i < 4; i++) expect((await chat([A, B][i % 2]!, k.key, "priced")).status).toBe(200);
    await waitFor(() => alerts.some((a) => a.body.key_id === k.key_id), { what: "the soft budget webhook" });
    // Every charge durable (so every flush that could have crossed it again is done): still one alert.
    await waitFor(async () => (await cluster.pool.query("SELECT spend FROM gh_keys WHERE key_id = $1", [k.key_id])).rows[0].spend === 4 * cost, {
      what: "every charge to be flushed",
    });
    const mine = alerts.filter((a) => a.body.key_id === k.key_id);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.signed).toBe(true);
    expect(mine[0]!.body).toMatchObject({ type: "soft_budget_crossed", level: "key", key_id: k.key_id, soft_budget: 1.5 * cost, max_budget: 10 * cost });
    expect(mine[0]!.body.spend).toBeGreaterThanOrEqual(1.5 * cost);
    let counted = 0;
    for (const r of [A, B]) counted += Number((await r.admin("/metrics")).text.match(/^gatehouse_soft_budget_alerts_total (\d+)/m)?.[1] ?? 0);
    expect(counted).toBeGreaterThanOrEqual(1);
    // A new budget period (the spend reset) may cross it again: told again.
    expect((await A.admin(`/key/${encodeURIComponent(k.key)}/reset_spend`, { reset_to: 0 })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await chat(B, k.key, "priced")).status).toBe(200);
    await waitFor(() => alerts.filter((a) => a.body.key_id === k.key_id).length === 2, { what: "the second period's alert" });
  });

  it("a team's soft_budget is told the same way, once, naming the team", async () => {
    const probe = await generate({});
    const cost = costOf((await chat(A, probe.key, "priced")).body.usage);
    const team = (await A.admin("/team/new", { soft_budget: 1.5 * cost })).body;
    expect(team.soft_budget).toBe(1.5 * cost);
    const [k1, k2] = [await generate({ team_id: team.team_id }), await generate({ team_id: team.team_id })];
    await cluster.settle();
    for (let i = 0; i < 4; i++) expect((await chat([A, B][i % 2]!, [k1, k2][i % 2]!.key, "priced")).status).toBe(200);
    await waitFor(async () => (await A.admin(`/team/info?team_id=${team.team_id}`)).body.team_info.durable_spend === 4 * cost, { what: "the team's spend to be flushed" });
    await waitFor(() => alerts.some((a) => a.body.team_id === team.team_id), { what: "the team's alert" });
    const mine = alerts.filter((a) => a.body.team_id === team.team_id);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.body).toMatchObject({ type: "soft_budget_crossed", level: "team", team_id: team.team_id, soft_budget: 1.5 * cost });
    expect(mine[0]!.signed).toBe(true);
  });

  it("enforced_params: a request lacking one is refused with a 400 naming every one it lacks", async () => {
    const k = await generate({ enforced_params: ["user", "metadata.project"] });
    await cluster.settle();
    const none = await chat(A, k.key, "free");
    expect(none.status).toBe(400);
    expect(openAIError(none.body)).toMatchObject({ code: "missing_enforced_params", param: "user" });
    expect(none.body.error.message).toContain("user, metadata.project");
    expect((await chat(B, k.key, "free", { user: "u1" })).body.error.param).toBe("metadata.project");
    expect((await chat(B, k.key, "free", { user: "u1", metadata: { project: "p" } })).status).toBe(200);
  });
});
