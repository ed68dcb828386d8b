import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
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

let cluster: Cluster;
let source: TestDatabase;

beforeAll(async () => {
  cluster = await startCluster({ size: 2 });
  source = await createTestDatabase();
  const db = new pg.Pool({ connectionString: source.url, max: 1 });
  await db.query(`
    CREATE TABLE "LiteLLM_TeamTable" (team_id text PRIMARY KEY, team_alias text, members_with_roles jsonb NOT NULL DEFAULT '{}', metadata jsonb NOT NULL DEFAULT '{}',
      max_budget float8, spend float8 NOT NULL DEFAULT 0, models text[], max_parallel_requests integer, tpm_limit bigint, rpm_limit bigint,
      budget_duration text, blocked boolean NOT NULL DEFAULT false);
    CREATE TABLE "LiteLLM_UserTable" (user_id text PRIMARY KEY, user_alias text, user_role text, max_budget float8, spend float8 NOT NULL DEFAULT 0,
      user_email text, models text[], metadata jsonb NOT NULL DEFAULT '{}', max_parallel_requests integer, tpm_limit bigint, rpm_limit bigint, budget_duration text);
    CREATE TABLE "LiteLLM_VerificationToken" (token text PRIMARY KEY, key_name text, key_alias text, spend float8 NOT NULL DEFAULT 0, expires timestamp(3),
      models text[], user_id text, team_id text, max_parallel_requests integer, metadata jsonb NOT NULL DEFAULT '{}', blocked boolean, tpm_limit bigint,
      rpm_limit bigint, max_budget float8, budget_duration text, budget_reset_at timestamp(3));
    INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, models, max_budget, spend) VALUES ('lt-team', 'imported team', '{mock-gpt}', 50, 1.5);
    INSERT INTO "LiteLLM_UserTable" (user_id, user_email, user_role, models) VALUES ('lt-user', 'lt@example.com', 'internal_user', NULL);
  `);
  await db.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, team_id, user_id, blocked, spend) VALUES
      ($1, 'sk-...0001', 'team key', 'lt-team', NULL, NULL, 2.5),
      ($2, 'sk-...0002', 'user key', NULL, 'lt-user', true, 0),
      ($3, 'sk-...0003', 'orphan', 'no-such-team', NULL, false, 0),
      ('not-a-sha256-hash', 'sk-...xxxx', 'bad', NULL, NULL, false, 0)`,
    [sha(TEAM_KEY), sha(USER_KEY), sha(ORPHAN_KEY)],
  );
  await db.end();
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await source?.drop();
});

describe("gatehouse import-litellm", () => {
  it("moves teams, users and keys by hash; running replicas serve them at once; a second run changes nothing", async () => {
    // Tried before the import: every replica caches the miss.
    for (const r of cluster.replicas) expect((await api(r.url, "/v1/chat/completions", { key: TEAM_KEY, body: chatBody("mock-gpt") })).status).toBe(401);

    const env = { PATH: process.env.PATH ?? "", ...cluster.env };
    const first = await run(process.execPath, [cli, "import-litellm", "--from", source.url, "--config", cluster.configFile], { env });
    expect(first.stdout).toContain("imported 1 of 1 teams, 1 of 1 users, 2 of 4 keys");

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
    const team = await cluster.replicas[0]!.admin("/team/info?team_id=lt-team");
    expect(team.body).toMatchObject({ team_info: { team_alias: "imported team", max_budget: 50, spend: 1.5 }, key_count: 1 });
    expect((await cluster.replicas[1]!.admin("/user/info?user_id=lt-user")).body.user_info.user_email).toBe("lt@example.com");

    const again = await run(process.execPath, [cli, "import-litellm", "--from", source.url, "--config", cluster.configFile], { env });
    expect(again.stdout).toContain("imported 0 of 1 teams, 0 of 1 users, 0 of 4 keys");
  });
});
