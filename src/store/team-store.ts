import type { Queryable } from "./db.js";

/**
 * The only module that reads or writes `gh_teams` (sql/0005_teams.sql). Optional fields of an update travel as
 * one jsonb patch, as in key-store.ts, so no SQL is assembled from strings.
 */

export interface TeamMember {
  user_id: string;
  user_email?: string | null;
  role: "admin" | "user";
  /** The member's budget inside this team (LiteLLM's field name); absent or null: none. */
  max_budget_in_team?: number | null;
}

export interface TeamRow {
  team_id: string;
  team_alias: string | null;
  models: string[];
  max_budget: number | null;
  spend: number;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  blocked: boolean;
  metadata: Record<string, unknown>;
  members_with_roles: TeamMember[];
  deleted_at: Date | null;
  created_at: Date;
  updated_at: Date;
  version: number;
  soft_budget: number | null;
}

/** The columns a team's cached record is built from (no metadata or spend; of the members, only their budgets). */
export type TeamAuthRow = Pick<TeamRow, "team_id" | "team_alias" | "models" | "blocked" | "max_budget" | "tpm_limit" | "rpm_limit" | "max_parallel_requests" | "version"> & {
  deleted: boolean;
  /** user_id → max_budget_in_team, for the members that have one. */
  member_budgets: Record<string, number>;
};

export interface TeamPatch {
  team_alias?: string | null;
  models?: string[];
  max_budget?: number | null;
  budget_duration?: string | null;
  budget_interval?: string | null;
  tpm_limit?: number | null;
  rpm_limit?: number | null;
  max_parallel_requests?: number | null;
  blocked?: boolean;
  metadata?: Record<string, unknown>;
  members_with_roles?: TeamMember[];
  soft_budget?: number | null;
}

const INSERT_TEAM = `
INSERT INTO gh_teams (team_id, team_alias, models, max_budget, budget_duration, budget_reset_at, tpm_limit, rpm_limit,
  max_parallel_requests, blocked, metadata, members_with_roles, soft_budget)
VALUES ($1, $2, COALESCE($3::text[], '{}'), $4, $5,
  now() + $6::interval,
  $7, $8, $9, COALESCE($10::boolean, false), COALESCE($11::jsonb, '{}'::jsonb), COALESCE($12::jsonb, '[]'::jsonb), $13)
ON CONFLICT (team_id) DO NOTHING
RETURNING *`;

const UPDATE_TEAM = `
UPDATE gh_teams SET
  team_alias = CASE WHEN $2::jsonb ? 'team_alias' THEN $2->>'team_alias' ELSE team_alias END,
  models = CASE WHEN $2::jsonb ? 'models' THEN ARRAY(SELECT jsonb_array_elements_text($2->'models')) ELSE models END,
  max_budget = CASE WHEN $2::jsonb ? 'max_budget' THEN ($2->>'max_budget')::float8 ELSE max_budget END,
  budget_duration = CASE WHEN $2::jsonb ? 'budget_duration' THEN $2->>'budget_duration' ELSE budget_duration END,
  budget_reset_at = CASE WHEN $2::jsonb ? 'budget_interval' THEN now() + ($2->>'budget_interval')::interval ELSE budget_reset_at END,
  tpm_limit = CASE WHEN $2::jsonb ? 'tpm_limit' THEN ($2->>'tpm_limit')::bigint ELSE tpm_limit END,
  rpm_limit = CASE WHEN $2::jsonb ? 'rpm_limit' THEN ($2->>'rpm_limit')::bigint ELSE rpm_limit END,
  max_parallel_requests = CASE WHEN $2::jsonb ? 'max_parallel_requests' THEN ($2->>'max_parallel_requests')::integer ELSE max_parallel_requests END,
  blocked = CASE WHEN $2::jsonb ? 'blocked' THEN ($2->>'blocked')::boolean ELSE blocked END,
  metadata = CASE WHEN $2::jsonb ? 'metadata' THEN $2->'metadata' ELSE metadata END,
  members_with_roles = CASE WHEN $2::jsonb ? 'members_with_roles' THEN $2->'members_with_roles' ELSE members_with_roles END,
  soft_budget = CASE WHEN $2::jsonb ? 'soft_budget' THEN ($2->>'soft_budget')::float8 ELSE soft_budget END,
  version = nextval('gh_key_version_seq'),
  updated_at = clock_timestamp()
WHERE team_id = $1 AND deleted_at IS NULL
RETURNING *`;

// Held until the change commits: changes of one team are serialised, like a key's (key-addressing.ts).
const LOCK_TEAMS = "SELECT * FROM gh_teams WHERE team_id = ANY($1::text[]) AND deleted_at IS NULL ORDER BY team_id FOR UPDATE";
const MARK_DELETED = `
UPDATE gh_teams SET deleted_at = clock_timestamp(), blocked = true, version = nextval('gh_key_version_seq'), updated_at = clock_timestamp()
WHERE team_id = ANY($1::text[]) AND deleted_at IS NULL
RETURNING *`;
const DELETE_TEAM_KEYS = "DELETE FROM gh_keys WHERE team_id = ANY($1::text[]) RETURNING token";
const SELECT_TEAM = "SELECT * FROM gh_teams WHERE team_id = $1";
const SELECT_TEAM_FOR_AUTH = `
SELECT team_id, team_alias, models, blocked, max_budget, tpm_limit, rpm_limit, max_parallel_requests, version,
  deleted_at IS NOT NULL AS deleted,
  (SELECT COALESCE(jsonb_object_agg(m->>'user_id', (m->>'max_budget_in_team')::float8), '{}'::jsonb)
     FROM jsonb_array_elements(members_with_roles) m WHERE m->>'max_budget_in_team' IS NOT NULL) AS member_budgets
FROM gh_teams WHERE team_id = $1`;
const LIST_TEAMS = "SELECT * FROM gh_teams WHERE deleted_at IS NULL ORDER BY created_at, team_id LIMIT $1 OFFSET $2";
const COUNT_TEAMS = "SELECT count(*)::int8 AS total FROM gh_teams WHERE deleted_at IS NULL";

export interface NewTeam extends TeamPatch {
  team_id: string;
}

/** Inserts a team; null when the team_id is taken (by a live or a deleted team). */
export async function insertTeam(db: Queryable, t: NewTeam): Promise<TeamRow | null> {
  const { rows } = await db.query<TeamRow>(INSERT_TEAM, [
    t.team_id,
    t.team_alias ?? null,
    t.models ?? null,
    t.max_budget ?? null,
    t.budget_duration ?? null,
    t.budget_interval ?? null,
    t.tpm_limit ?? null,
    t.rpm_limit ?? null,
    t.max_parallel_requests ?? null,
    t.blocked ?? null,
    t.metadata === undefined ? null : JSON.stringify(t.metadata),
    t.members_with_roles === undefined ? null : JSON.stringify(t.members_with_roles),
    t.soft_budget ?? null,
  ]);
  return rows[0] ?? null;
}

export async function updateTeam(db: Queryable, teamId: string, patch: TeamPatch): Promise<TeamRow | null> {
  const { rows } = await db.query<TeamRow>(UPDATE_TEAM, [teamId, JSON.stringify(patch)]);
  return rows[0] ?? null;
}

export async function lockTeams(tx: Queryable, teamIds: string[]): Promise<TeamRow[]> {
  return (await tx.query<TeamRow>(LOCK_TEAMS, [teamIds])).rows;
}

/** Marks teams deleted (their ids are never reused) and deletes their keys; returns the teams and the keys' tokens. */
export async function deleteTeams(tx: Queryable, teamIds: string[]): Promise<{ teams: TeamRow[]; keyTokens: string[] }> {
  const teams = (await tx.query<TeamRow>(MARK_DELETED, [teamIds])).rows;
  const keyTokens = (await tx.query<{ token: string }>(DELETE_TEAM_KEYS, [teamIds])).rows.map((r) => r.token);
  return { teams, keyTokens };
}

export async function findTeam(db: Queryable, teamId: string): Promise<TeamRow | null> {
  return (await db.query<TeamRow>(SELECT_TEAM, [teamId])).rows[0] ?? null;
}

export async function findTeamForAuth(db: Queryable, teamId: string): Promise<TeamAuthRow | null> {
  return (await db.query<TeamAuthRow>(SELECT_TEAM_FOR_AUTH, [teamId])).rows[0] ?? null;
}

export async function listTeams(db: Queryable, page: { limit: number; offset: number }): Promise<{ rows: TeamRow[]; total: number }> {
  const [list, count] = await Promise.all([db.query<TeamRow>(LIST_TEAMS, [page.limit, page.offset]), db.query<{ total: string }>(COUNT_TEAMS)]);
  return { rows: list.rows, total: Number(count.rows[0]!.total) };
}

// FOR SHARE: a key joining a team and the team's delete are serialised (the delete's UPDATE waits, or the key
// insert sees the team deleted), so no key is ever added to a team being deleted.
const SELECT_LIVE_TEAM_FOR_SHARE = "SELECT * FROM gh_teams WHERE team_id = $1 AND deleted_at IS NULL FOR SHARE";

/** A live team, held against deletion until the caller's transaction ends; null when none. */
export async function findLiveTeamForShare(tx: Queryable, teamId: string): Promise<TeamRow | null> {
  return (await tx.query<TeamRow>(SELECT_LIVE_TEAM_FOR_SHARE, [teamId])).rows[0] ?? null;
}

export interface MemberSpend {
  user_id: string;
  spend: number;
}

/** The durable spend of a team's members inside the team (sql/0009). */
export async function memberSpends(db: Queryable, teamId: string): Promise<MemberSpend[]> {
  return (await db.query<MemberSpend>("SELECT user_id, spend FROM gh_team_member_spend WHERE team_id = $1", [teamId])).rows;
}

/** Forgets the spend of members who left the team (re-joining starts from 0). */
export async function dropMemberSpend(tx: Queryable, teamId: string, userIds: string[]): Promise<void> {
  await tx.query("DELETE FROM gh_team_member_spend WHERE team_id = $1 AND user_id = ANY($2::text[])", [teamId, userIds]);
}
