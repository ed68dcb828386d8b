import type { Queryable } from "./db.js";

/**
 * Reads a LiteLLM proxy's tables (its Prisma schema: "LiteLLM_TeamTable", "LiteLLM_UserTable",
 * "LiteLLM_VerificationToken") and writes what they hold into Gatehouse's (`gatehouse import-litellm`,
 * docs/litellm-migration.md). LiteLLM stores keys as the sha256 hex of the plaintext, as Gatehouse does, so keys
 * move without anyone knowing them. Rows already present are left alone (ON CONFLICT DO NOTHING).
 */

const READ_TEAMS = `
SELECT team_id, team_alias, COALESCE(models, '{}') AS models, max_budget, spend, tpm_limit, rpm_limit, max_parallel_requests,
  budget_duration, budget_reset_at AT TIME ZONE 'UTC' AS budget_reset_at, blocked, metadata, members_with_roles
FROM "LiteLLM_TeamTable" ORDER BY team_id`;
const READ_USERS = `
SELECT user_id, user_alias, user_email, user_role, COALESCE(models, '{}') AS models, max_budget, spend, tpm_limit, rpm_limit,
  max_parallel_requests, budget_duration, budget_reset_at AT TIME ZONE 'UTC' AS budget_reset_at, metadata
FROM "LiteLLM_UserTable" ORDER BY user_id`;
// aliases and model_max_budget are columns of newer LiteLLM versions only: read through to_jsonb, null where absent.
const READ_KEYS = `
SELECT token, key_name, key_alias, spend, expires AT TIME ZONE 'UTC' AS expires, COALESCE(models, '{}') AS models, user_id, team_id,
  max_parallel_requests, metadata, COALESCE(blocked, false) AS blocked, tpm_limit, rpm_limit, max_budget, budget_duration,
  budget_reset_at AT TIME ZONE 'UTC' AS budget_reset_at, to_jsonb(t)->'aliases' AS aliases, to_jsonb(t)->'model_max_budget' AS model_max_budget
FROM "LiteLLM_VerificationToken" t ORDER BY token`;

/** The tables a LiteLLM proxy's database has (its Prisma schema's names). */
const LITELLM_TABLES = ["LiteLLM_VerificationToken", "LiteLLM_TeamTable", "LiteLLM_UserTable"] as const;

/** Those of LiteLLM's tables the source database lacks: all of them means it is not a LiteLLM proxy's database. */
export async function missingLiteLLMTables(source: Queryable): Promise<string[]> {
  const { rows } = await source.query<{ name: string; present: boolean }>("SELECT name, to_regclass(quote_ident(name)) IS NOT NULL AS present FROM unnest($1::text[]) AS name", [
    LITELLM_TABLES,
  ]);
  return rows.filter((r) => !r.present).map((r) => r.name);
}

export interface LiteLLMData {
  teams: Array<Record<string, unknown>>;
  users: Array<Record<string, unknown>>;
  keys: Array<Record<string, unknown>>;
}

export async function readLiteLLM(source: Queryable): Promise<LiteLLMData> {
  const [teams, users, keys] = [(await source.query(READ_TEAMS)).rows, (await source.query(READ_USERS)).rows, (await source.query(READ_KEYS)).rows];
  return { teams, users, keys };
}

// LiteLLM's members_with_roles defaults to an empty object; Gatehouse's is a list.
const INSERT_TEAMS = `
INSERT INTO gh_teams (team_id, team_alias, models, max_budget, spend, tpm_limit, rpm_limit, max_parallel_requests, budget_duration,
  budget_reset_at, blocked, metadata, members_with_roles)
SELECT r.team_id,
  -- LiteLLM's team_alias is not unique, Gatehouse's is: the first team of an alias keeps it, the others import without.
  CASE WHEN row_number() OVER (PARTITION BY r.team_alias ORDER BY r.team_id) = 1
    AND NOT EXISTS (SELECT 1 FROM gh_teams t WHERE t.team_alias = r.team_alias) THEN r.team_alias END,
  array_remove(r.models, 'all-team-models'), r.max_budget, COALESCE(r.spend, 0), r.tpm_limit, r.rpm_limit, r.max_parallel_requests,
  -- A budget period must have an end, or its spend would never reset (the sweeper looks for ends).
  r.budget_duration, CASE WHEN r.budget_duration IS NULL THEN NULL ELSE COALESCE(r.budget_reset_at, now()) END,
  COALESCE(r.blocked, false), COALESCE(r.metadata, '{}'::jsonb),
  CASE WHEN jsonb_typeof(r.members_with_roles) = 'array' THEN r.members_with_roles ELSE '[]'::jsonb END
FROM jsonb_to_recordset($1::jsonb) AS r(team_id text, team_alias text, models text[], max_budget float8, spend float8, tpm_limit bigint,
  rpm_limit bigint, max_parallel_requests integer, budget_duration text, budget_reset_at timestamptz, blocked boolean, metadata jsonb,
  members_with_roles jsonb)
ON CONFLICT (team_id) DO NOTHING
RETURNING team_id`;

const INSERT_USERS = `
INSERT INTO gh_users (user_id, user_alias, user_email, user_role, models, max_budget, spend, tpm_limit, rpm_limit, max_parallel_requests,
  budget_duration, budget_reset_at, metadata)
SELECT r.user_id, r.user_alias, r.user_email, COALESCE(r.user_role, 'internal_user'), r.models, r.max_budget, COALESCE(r.spend, 0),
  r.tpm_limit, r.rpm_limit, r.max_parallel_requests, r.budget_duration,
  CASE WHEN r.budget_duration IS NULL THEN NULL ELSE COALESCE(r.budget_reset_at, now()) END, COALESCE(r.metadata, '{}'::jsonb)
FROM jsonb_to_recordset($1::jsonb) AS r(user_id text, user_alias text, user_email text, user_role text, models text[], max_budget float8,
  spend float8, tpm_limit bigint, rpm_limit bigint, max_parallel_requests integer, budget_duration text, budget_reset_at timestamptz,
  metadata jsonb)
ON CONFLICT DO NOTHING
RETURNING user_id`;

// A key of a team that is not here (not imported, or deleted) would be refused as team_deleted: it is skipped and
// counted instead. Tokens that are not a sha256 hex are not LiteLLM hashes: skipped too.
const INSERT_KEYS = `
INSERT INTO gh_keys (token, key_name, key_alias, spend, expires, models, user_id, team_id, max_parallel_requests, metadata, blocked,
  tpm_limit, rpm_limit, max_budget, budget_duration, budget_reset_at, tags, aliases, enforced_params, model_max_budget, model_rpm_limit,
  model_tpm_limit)
SELECT r.token, COALESCE(r.key_name, 'sk-...' || right(r.token, 4)), r.key_alias, COALESCE(r.spend, 0), r.expires,
  -- LiteLLM's "all-team-models" is what an empty list means here (the team's models).
  array_remove(r.models, 'all-team-models'), r.user_id, r.team_id, r.max_parallel_requests, COALESCE(r.metadata, '{}'::jsonb),
  COALESCE(r.blocked, false), r.tpm_limit, r.rpm_limit, r.max_budget, r.budget_duration,
  -- A budget period must have an end, or its spend would never reset (the sweeper looks for ends).
  CASE WHEN r.budget_duration IS NULL THEN NULL ELSE COALESCE(r.budget_reset_at, now()) END,
  COALESCE(r.tags, '{}'), COALESCE(r.aliases, '{}'::jsonb), COALESCE(r.enforced_params, '{}'), COALESCE(r.model_max_budget, '{}'::jsonb),
  COALESCE(r.model_rpm_limit, '{}'::jsonb), COALESCE(r.model_tpm_limit, '{}'::jsonb)
FROM jsonb_to_recordset($1::jsonb) AS r(token text, key_name text, key_alias text, spend float8, expires timestamptz, models text[],
  user_id text, team_id text, max_parallel_requests integer, metadata jsonb, blocked boolean, tpm_limit bigint, rpm_limit bigint,
  max_budget float8, budget_duration text, budget_reset_at timestamptz, tags text[], aliases jsonb, enforced_params text[],
  model_max_budget jsonb, model_rpm_limit jsonb, model_tpm_limit jsonb)
WHERE r.token ~ '^[0-9a-f]{64}$'
  AND (r.team_id IS NULL OR EXISTS (SELECT 1 FROM gh_teams t WHERE t.team_id = r.team_id AND t.deleted_at IS NULL))
ON CONFLICT DO NOTHING
RETURNING token`;

export async function insertImportedTeams(tx: Queryable, rows: Array<Record<string, unknown>>): Promise<string[]> {
  return (await tx.query<{ team_id: string }>(INSERT_TEAMS, [JSON.stringify(rows)])).rows.map((r) => r.team_id);
}

export async function insertImportedUsers(tx: Queryable, rows: Array<Record<string, unknown>>): Promise<string[]> {
  return (await tx.query<{ user_id: string }>(INSERT_USERS, [JSON.stringify(rows)])).rows.map((r) => r.user_id);
}

export async function insertImportedKeys(tx: Queryable, rows: Array<Record<string, unknown>>): Promise<string[]> {
  return (await tx.query<{ token: string }>(INSERT_KEYS, [JSON.stringify(rows)])).rows.map((r) => r.token);
}

const HAS_MODEL_TABLE = `SELECT to_regclass('"LiteLLM_ProxyModelTable"') IS NOT NULL AS present`;
const READ_MODELS = `SELECT model_id, model_name, litellm_params, model_info FROM "LiteLLM_ProxyModelTable" ORDER BY model_id`;

/** LiteLLM's database models (their litellm_params values sealed with LiteLLM's salt key); none when the table is absent. */
export async function readLiteLLMModels(source: Queryable): Promise<Array<{ model_id: string; model_name: string; litellm_params: unknown; model_info: unknown }>> {
  if (!(await source.query<{ present: boolean }>(HAS_MODEL_TABLE)).rows[0]?.present) return [];
  return (await source.query(READ_MODELS)).rows;
}

const INSERT_MODEL = `
INSERT INTO gh_models (model_id, model_name, params, api_key_sealed, model_info) VALUES ($1::uuid, $2, $3::jsonb, $4, $5::jsonb)
ON CONFLICT (model_id) DO NOTHING
RETURNING model_id`;

/** One imported model under the id it had (or one derived from it): true if written, false if already here. */
export async function insertImportedModel(
  tx: Queryable,
  m: { model_id: string; model_name: string; params: object; api_key_sealed: string | null; model_info: object },
): Promise<boolean> {
  const { rowCount } = await tx.query(INSERT_MODEL, [m.model_id, m.model_name, JSON.stringify(m.params), m.api_key_sealed, JSON.stringify(m.model_info)]);
  return rowCount === 1;
}
