import type { Queryable } from "./db.js";

/** The only module that reads or writes `gh_users` (sql/0006_users.sql); patches travel as one jsonb value. */

export interface UserRow {
  user_id: string;
  user_email: string | null;
  user_alias: string | null;
  user_role: string;
  models: string[];
  max_budget: number | null;
  spend: number;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  metadata: Record<string, unknown>;
  deleted_at: Date | null;
  created_at: Date;
  updated_at: Date;
  version: number;
}

/** The columns a user's cached record is built from. */
export type UserAuthRow = Pick<UserRow, "user_id" | "models" | "max_budget" | "tpm_limit" | "rpm_limit" | "max_parallel_requests" | "version"> & { deleted: boolean };

export interface UserPatch {
  user_email?: string | null;
  user_alias?: string | null;
  user_role?: string;
  models?: string[];
  max_budget?: number | null;
  budget_duration?: string | null;
  budget_interval?: string | null;
  tpm_limit?: number | null;
  rpm_limit?: number | null;
  max_parallel_requests?: number | null;
  metadata?: Record<string, unknown>;
}

const INSERT_USER = `
INSERT INTO gh_users (user_id, user_email, user_alias, user_role, models, max_budget, budget_duration, budget_reset_at, tpm_limit,
  rpm_limit, max_parallel_requests, metadata)
VALUES ($1, $2, $3, COALESCE($4, 'internal_user'), COALESCE($5::text[], '{}'), $6, $7,
  now() + $8::interval,
  $9, $10, $11, COALESCE($12::jsonb, '{}'::jsonb))
ON CONFLICT DO NOTHING
RETURNING *`;

const UPDATE_USER = `
UPDATE gh_users SET
  user_email = CASE WHEN $2::jsonb ? 'user_email' THEN $2->>'user_email' ELSE user_email END,
  user_alias = CASE WHEN $2::jsonb ? 'user_alias' THEN $2->>'user_alias' ELSE user_alias END,
  user_role = CASE WHEN $2::jsonb ? 'user_role' THEN $2->>'user_role' ELSE user_role END,
  models = CASE WHEN $2::jsonb ? 'models' THEN ARRAY(SELECT jsonb_array_elements_text($2->'models')) ELSE models END,
  max_budget = CASE WHEN $2::jsonb ? 'max_budget' THEN ($2->>'max_budget')::float8 ELSE max_budget END,
  budget_duration = CASE WHEN $2::jsonb ? 'budget_duration' THEN $2->>'budget_duration' ELSE budget_duration END,
  budget_reset_at = CASE WHEN $2::jsonb ? 'budget_interval' THEN now() + ($2->>'budget_interval')::interval ELSE budget_reset_at END,
  tpm_limit = CASE WHEN $2::jsonb ? 'tpm_limit' THEN ($2->>'tpm_limit')::bigint ELSE tpm_limit END,
  rpm_limit = CASE WHEN $2::jsonb ? 'rpm_limit' THEN ($2->>'rpm_limit')::bigint ELSE rpm_limit END,
  max_parallel_requests = CASE WHEN $2::jsonb ? 'max_parallel_requests' THEN ($2->>'max_parallel_requests')::integer ELSE max_parallel_requests END,
  metadata = CASE WHEN $2::jsonb ? 'metadata' THEN $2->'metadata' ELSE metadata END,
  version = nextval('gh_key_version_seq'),
  updated_at = clock_timestamp()
WHERE user_id = $1 AND deleted_at IS NULL
RETURNING *`;

const LOCK_USERS = "SELECT * FROM gh_users WHERE user_id = ANY($1::text[]) AND deleted_at IS NULL ORDER BY user_id FOR UPDATE";
const MARK_DELETED = `
UPDATE gh_users SET deleted_at = clock_timestamp(), version = nextval('gh_key_version_seq'), updated_at = clock_timestamp()
WHERE user_id = ANY($1::text[]) AND deleted_at IS NULL
RETURNING *`;
const DELETE_USER_KEYS = "DELETE FROM gh_keys WHERE user_id = ANY($1::text[]) RETURNING token";
const SELECT_USER = "SELECT * FROM gh_users WHERE user_id = $1";
const SELECT_USER_FOR_AUTH = `
SELECT user_id, models, max_budget, tpm_limit, rpm_limit, max_parallel_requests, version, deleted_at IS NOT NULL AS deleted
FROM gh_users WHERE user_id = $1`;
// FOR SHARE: a key naming a user and the user's delete are serialised, as for teams.
const SELECT_USER_FOR_SHARE = "SELECT * FROM gh_users WHERE user_id = $1 FOR SHARE";
const LIST_USERS = "SELECT * FROM gh_users WHERE deleted_at IS NULL ORDER BY created_at, user_id LIMIT $1 OFFSET $2";
const COUNT_USERS = "SELECT count(*)::int8 AS total FROM gh_users WHERE deleted_at IS NULL";

/** Inserts a user; null when the user_id is taken (by a live or a deleted user). */
export async function insertUser(db: Queryable, user_id: string, u: UserPatch): Promise<UserRow | null> {
  const { rows } = await db.query<UserRow>(INSERT_USER, [
    user_id,
    u.user_email ?? null,
    u.user_alias ?? null,
    u.user_role ?? null,
    u.models ?? null,
    u.max_budget ?? null,
    u.budget_duration ?? null,
    u.budget_interval ?? null,
    u.tpm_limit ?? null,
    u.rpm_limit ?? null,
    u.max_parallel_requests ?? null,
    u.metadata === undefined ? null : JSON.stringify(u.metadata),
  ]);
  return rows[0] ?? null;
}

export async function updateUser(db: Queryable, userId: string, patch: UserPatch): Promise<UserRow | null> {
  return (await db.query<UserRow>(UPDATE_USER, [userId, JSON.stringify(patch)])).rows[0] ?? null;
}

export async function lockUsers(tx: Queryable, userIds: string[]): Promise<UserRow[]> {
  return (await tx.query<UserRow>(LOCK_USERS, [userIds])).rows;
}

/** Marks users deleted (ids never reused) and deletes their keys. */
export async function deleteUsers(tx: Queryable, userIds: string[]): Promise<{ users: UserRow[]; keyTokens: string[] }> {
  const users = (await tx.query<UserRow>(MARK_DELETED, [userIds])).rows;
  const keyTokens = (await tx.query<{ token: string }>(DELETE_USER_KEYS, [userIds])).rows.map((r) => r.token);
  return { users, keyTokens };
}

export async function findUser(db: Queryable, userId: string): Promise<UserRow | null> {
  return (await db.query<UserRow>(SELECT_USER, [userId])).rows[0] ?? null;
}

export async function findUserForAuth(db: Queryable, userId: string): Promise<UserAuthRow | null> {
  return (await db.query<UserAuthRow>(SELECT_USER_FOR_AUTH, [userId])).rows[0] ?? null;
}

/** The user's row (deleted or not), held against deletion until the caller's transaction ends; null when none. */
export async function findUserForShare(tx: Queryable, userId: string): Promise<UserRow | null> {
  return (await tx.query<UserRow>(SELECT_USER_FOR_SHARE, [userId])).rows[0] ?? null;
}

export async function listUsers(db: Queryable, page: { limit: number; offset: number }): Promise<{ rows: UserRow[]; total: number }> {
  const [list, count] = await Promise.all([db.query<UserRow>(LIST_USERS, [page.limit, page.offset]), db.query<{ total: string }>(COUNT_USERS)]);
  return { rows: list.rows, total: Number(count.rows[0]!.total) };
}
