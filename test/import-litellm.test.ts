import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { sealLiteLLMSecret } from "./helpers/litellm-seal.js";
import { createTestDatabase, waitFor, type TestDatabase } from "./helpers/services.js";

/**
 * `gatehouse import-litellm`: a LiteLLM proxy's database (its tables as LiteLLM's Prisma schema creates them, the
 * columns the import reads) moved into a running 2-replica cluster; clients keep their keys.
 */
const run = promisify(execFile);
const cli = path.resolve(import.meta.dirname, "../dist/cli.js");
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const TEAM_KEY = "sk-litellm-team-key-0000000000000000000001";
const USER_KEY = "sk-litellm-user-key-0000000000000000000002";
const ORPHAN_KEY = "sk-litellm-orphan-key-00000000000000000003";
// LiteLLM seals its database models' params with this (its LITELLM_SALT_KEY) and NaCl's secretbox.
const LITELLM_SALT = "litellm-salt-key-of-the-old-proxy";
const UPSTREAM_KEY = "sk-upstream-secret-imported-0001";
const MODEL_ID = "5b0e7a52-0d7c-4a8e-9a43-0f5c3b1d2e11";

let cluster: Cluster;
let source: TestDatabase;
let upstream: FakeUpstream;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  cluster = await startCluster({ size: 2 });
  source = await createTestDatabase();
  const db = new pg.Pool({ connectionString: source.url, max: 1 });
  await db.query(`
    CREATE TABLE "LiteLLM_TeamTable" (team_id text PRIMARY KEY, team_alias text, members_with_roles jsonb NOT NULL DEFAULT '{}', metadata jsonb NOT NULL DEFAULT '{}',
      max_budget float8, spend float8 NOT NULL DEFAULT 0, models text[], max_parallel_requests integer, tpm_limit bigint, rpm_limit bigint,
      budget_duration text, budget_reset_at timestamp(3), blocked boolean NOT NULL DEFAULT false);
    CREATE TABLE "LiteLLM_UserTable" (user_id text PRIMARY KEY, user_alias text, user_role text, max_budget float8, spend float8 NOT NULL DEFAULT 0,
      user_email text, models text[], metadata jsonb NOT NULL DEFAULT '{}', max_parallel_requests integer, tpm_limit bigint, rpm_limit bigint, budget_duration text,
      budget_reset_at timestamp(3));
    CREATE TABLE "LiteLLM_VerificationToken" (token text PRIMARY KEY, key_name text, key_alias text, spend float8 NOT NULL DEFAULT 0, expires timestamp(3),
      models text[], user_id text, team_id text, max_parallel_requests integer, metadata jsonb NOT NULL DEFAULT '{}', blocked boolean, tpm_limit bigint,
      rpm_limit bigint, max_budget float8, budget_duration text, budget_reset_at timestamp(3));
    INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, models, max_budget, spend, budget_duration, budget_reset_at)
      VALUES ('lt-team', 'imported team', '{mock-gpt}', 50, 1.5, '30d', '2099-01-01 00:00:00');
    INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models) VALUES ('lt-user', 'lt@example.com', 'internal_user', NULL);
    CREATE TABLE "LiteLLM_ProxyModelTable" (model_id text PRIMARY KEY, model_name text NOT NULL, litellm_params jsonb NOT NULL, model_info jsonb,
      created_at timestamp(3) NOT NULL DEFAULT now(), created_by text NOT NULL DEFAULT 'admin', updated_at timestamp(3) NOT NULL DEFAULT now(),
      updated_by text NOT NULL DEFAULT 'admin');
  `);
  // As LiteLLM writes them: every string value of litellm_params sealed, numbers too (as strings).
  const sealed = (params: Record<string, string>) => Object.fromEntries(Object.entries(params).map(([k, v]) => [k, sealLiteLLMSecret(v, LITELLM_SALT)]));
  await db.query(
    `INSERT INTO "LiteLLM_ProxyModelTable" (model_id, model_name, litellm_params, model_info) VALUES ($1, 'lt-echo', $2, $3), ('model-2', 'lt-bedrock', $4, NULL),
      ('model-3', 'lt-per-second', $5, NULL)`,
    [
      MODEL_ID,
      JSON.stringify(sealed({ model: "openai/echo", api_base: `${upstream.url}/v1`, api_key: UPSTREAM_KEY, input_cost_per_token: "0.000001", rpm: "100" })),
      JSON.stringify({ id: MODEL_ID, db_model: true }),
      JSON.stringify(sealed({ model: "bedrock/anthropic.claude-v2", aws_region_name: "us-east-1" })),
      // A price LiteLLM charged and Gatehouse would not read: served here, it would be free.
      JSON.stringify(sealed({ model: "openai/echo", api_base: `${upstream.url}/v1`, input_cost_per_second: "0.0004" })),
    ],
  );
  await db.query(
    // LiteLLM keeps a key's tags, enforced_params and per-model rate limits in its metadata.
    `INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, team_id, user_id, blocked, spend, metadata) VALUES
      ($1, 'sk-...0001', 'team key', 'lt-team', NULL, NULL, 2.5,
        '{"tags": ["imported"], "model_rpm_limit": {"mock-gpt": 70}}'),
      ($2, 'sk-...0002', 'user key', NULL, 'lt-user', true, 0, '{"enforced_params": ["user"]}'),
      ($3, 'sk-...0003', 'orphan', 'no-such-team', NULL, false, 0, '{}'),
      ('not-a-sha256-hash', 'sk-...xxxx', 'bad', NULL, NULL, false, 0, '{}')`,
    [sha(TEAM_KEY), sha(USER_KEY), sha(ORPHAN_KEY)],
  );
  await db.end();
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await source?.drop();
  await upstream?.close();
});

describe("gatehouse import-litellm", () => {
  it("refuses, in one line, a database that is not a LiteLLM proxy's", async () => {
    const notLiteLLM = await createTestDatabase();
    try {
      const env = { PATH: process.env.PATH ?? "", ...cluster.env };
      const res = await run(process.execPath, [cli, "import-litellm", "--from", notLiteLLM.url, "--config", cluster.configFile], { env }).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code: number; stderr: string }) => err,
      );
      expect(res.code).toBe(1);
      expect(res.stderr.trim().split("\n")).toEqual([
        `gatehouse: --from is not a LiteLLM proxy's database: it has no "LiteLLM_VerificationToken", "LiteLLM_TeamTable", "LiteLLM_UserTable" tables (give the DATABASE_URL LiteLLM's proxy ran with)`,
      ]);
    } finally {
      await notLiteLLM.drop();
    }
  });

  it("moves teams, users and keys by hash; running replicas serve them at once; a second run changes nothing", async () => {
    // Tried before the import: every replica caches the miss.
    for (const r of cluster.replicas) expect((await api(r.url, "/v1/chat/completions", { key: TEAM_KEY, body: chatBody("mock-gpt") })).status).toBe(401);

    const env = { PATH: process.env.PATH ?? "", ...cluster.env };
    const args = [cli, "import-litellm", "--from", source.url, "--litellm-salt-key", LITELLM_SALT, "--config", cluster.configFile];
    const first = await run(process.execPath, args, { env });
    expect(first.stdout).toContain("imported 1 of 1 teams, 1 of 1 users, 2 of 4 keys");
    expect(first.stdout).toContain("1 of 3 models");
    expect(first.stdout).toContain("model lt-per-second not imported: litellm_params.input_cost_per_second: not a price Gatehouse reads, so the model would be served free");
    expect(first.stdout).toMatch(/model lt-bedrock not imported: .*model/);
    // rpm (a number LiteLLM stored as a string) is the deployment's own limit now: imported.
    expect(first.stdout).toContain("litellm_params fields Gatehouse does not use, not imported: aws_region_name\n");
    // The upstream key was opened with LiteLLM's salt key and sealed again with Gatehouse's: never printed or stored in clear.
    expect(first.stdout + first.stderr).not.toContain(UPSTREAM_KEY);
    const stored = await cluster.pool.query("SELECT model_id, params, api_key_sealed FROM gh_models WHERE model_name = 'lt-echo'");
    expect(stored.rows).toHaveLength(1);
    expect(stored.rows[0].model_id).toBe(MODEL_ID);
    expect(JSON.stringify(stored.rows[0])).not.toContain(UPSTREAM_KEY);
    // Numbers LiteLLM sealed as strings are numbers again: the price, and the deployment's rpm (honoured by routing).
    expect(stored.rows[0].params).toEqual({ model: "openai/echo", api_base: `${upstream.url}/v1`, input_cost_per_token: 0.000001, rpm: 100 });

    for (const r of cluster.replicas) {
      await waitFor(async () => (await api(r.url, "/v1/chat/completions", { key: TEAM_KEY, body: chatBody("mock-gpt") })).status === 200, {
        timeoutMs: 2_000,
        intervalMs: 10,
        what: `${r.name} to serve the imported key`,
      });
      // The team's models came with it; the blocked key stays blocked; the orphan was not imported.
      expect((await api(r.url, "/v1/chat/completions", { key: TEAM_KEY, body: chatBody("mock-other") })).status).toBe(403);
      expect(openAIError((await api(r.url, "/v1/chat/completions", { key: USER_KEY, body: chatBody("mock-gpt") })).body).code).toBe("key_blocked");
      expect((await api(r.url, "/v1/chat/completions", { key: ORPHAN_KEY, body: chatBody("mock-gpt") })).status).toBe(401);
    }
    // LiteLLM's per-key fields came with the keys (from its metadata, where LiteLLM keeps them).
    expect((await cluster.replicas[0]!.admin(`/key/info?key=${TEAM_KEY}`)).body.info).toMatchObject({ tags: ["imported"], model_rpm_limit: { "mock-gpt": 70 } });
    expect((await cluster.replicas[1]!.admin(`/key/info?key=${USER_KEY}`)).body.info.enforced_params).toEqual(["user"]);
    const team = await cluster.replicas[0]!.admin("/team/info?team_id=lt-team");
    expect(team.body).toMatchObject({ team_info: { team_alias: "imported team", max_budget: 50, spend: 1.5, budget_duration: "30d" }, key_count: 1 });
    // The team's budget period goes on from where LiteLLM had it.
    expect(new Date(team.body.team_info.budget_reset_at).toISOString()).toBe("2099-01-01T00:00:00.000Z");
    expect((await cluster.replicas[1]!.admin("/user/info?user_id=lt-user")).body.user_info.user_email).toBe("lt@example.com");

    // The imported model is served by every replica, with the upstream key it had in LiteLLM.
    const plain = (await cluster.replicas[0]!.admin("/key/generate", {})).body;
    for (const r of cluster.replicas) {
      await waitFor(async () => (await api(r.url, "/v1/chat/completions", { key: plain.key, body: chatBody("lt-echo") })).status === 200, {
        timeoutMs: 2_000,
        intervalMs: 10,
        what: `${r.name} to serve the imported model`,
      });
    }
    const echoed = upstream.requests.filter((r) => r.body.model === "echo");
    expect(echoed.length).toBeGreaterThanOrEqual(2);
    expect(new Set(echoed.map((r) => r.headers.authorization))).toEqual(new Set([`Bearer ${UPSTREAM_KEY}`]));

    const again = await run(process.execPath, args, { env });
    expect(again.stdout).toContain("imported 0 of 1 teams, 0 of 1 users, 0 of 4 keys");
    expect(again.stdout).toContain("0 of 3 models");

    // Without LiteLLM's salt key the models cannot be opened: skipped, and said so.
    const withoutKey = await run(process.execPath, [cli, "import-litellm", "--from", source.url, "--config", cluster.configFile], { env });
    expect(withoutKey.stdout).toContain("model lt-echo not imported: its params are sealed with LiteLLM's salt key: give --litellm-salt-key");
  });
});
