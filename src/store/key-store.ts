import { isUuid, type Queryable } from "./db.js";

/**
 * The only module that reads or writes `gh_keys`, except the spend columns charged and reset by
 * spend-store.ts. Statements are fixed text with bind parameters;
 * optional fields of an update travel as one jsonb patch so no SQL is ever assembled from strings.
 */

export interface KeyRow {
  token: string;
  key_id: string;
  key_alias: string | null;
  key_name: string;
  models: string[];
  max_budget: number | null;
  spend: number;
  spend_generation: number;
  budget_duration: string | null;
  budget_reset_at: Date | null;
  tpm_limit: number | null;
  rpm_limit: number | null;
  max_parallel_requests: number | null;
  metadata: Record<string, unknown>;
  user_id: string | null;
  team_id: string | null;
  expires: Date | null;
  blocked: boolean;
  created_at: Date;
  updated_at: Date;
  version: number;
  tags: string[];
  aliases: Record<string, string>;
  enforced_params: string[];
  soft_budget: number | null;
  model_max_budget: ModelBudgets;
  model_rpm_limit: Record<string, number>;
  model_tpm_limit: Record<string, number>;
}

/** A key's per-model budgets, as stored: LiteLLM's shape (`budget_limit`, `time_period` null for no period). */
export type ModelBudgets = Record<string, { budget_limit: number; time_period: string | null }>;

/** Fields a caller may set. `expires_in_ms` and `budget_interval` are turned into timestamps by the database clock. */
export interface KeyPatch {
  key_alias?: string | null;
  models?: string[];
  max_budget?: number | null;
  spend?: number;
  budget_duration?: string | null;
  budget_interval?: string | null;
  tpm_limit?: number | null;
  rpm_limit?: number | null;
  max_parallel_requests?: number | null;
  metadata?: Record<string, unknown>;
  user_id?: string | null;
  team_id?: string | null;
  expires_in_ms?: number | null;
  blocked?: boolean;
  tags?: string[];
  aliases?: Record<string, string>;
  enforced_params?: string[];
  soft_budget?: number | null;
  model_max_budget?: ModelBudgets;
  model_rpm_limit?: Record<string, number>;
  model_tpm_limit?: Record<string, number>;
}

export interface NewKey extends KeyPatch {
  token: string;
  key_name: string;
}

const SELECT_BY_TOKEN = "SELECT * FROM gh_keys WHERE token = $1";
const SELECT_BY_ALIASES = "SELECT * FROM gh_keys WHERE key_alias = ANY($1::text[])";

// Time comes from the database clock, like Kong's cluster events: replicas' clocks may drift.
const INSERT_KEY = `
INSERT INTO gh_keys (token, key_name, key_alias, models, max_budget, budget_duration, budget_reset_at,
  tpm_limit, rpm_limit, max_parallel_requests, metadata, user_id, team_id, expires, blocked,
  tags, aliases, enforced_params, soft_budget, model_max_budget, model_rpm_limit, model_tpm_limit)
VALUES ($1, $2, $3, COALESCE($4::text[], '{}'), $5, $6,
  now() + $7::interval,
  $8, $9, $10, COALESCE($11::jsonb, '{}'::jsonb), $12, $13,
  CASE WHEN $14::bigint IS NULL THEN NULL ELSE now() + $14::bigint * interval '1 millisecond' END,
  COALESCE($15::boolean, false),
  COALESCE($16::text[], '{}'), COALESCE($17::jsonb, '{}'::jsonb), COALESCE($18::text[], '{}'), $19,
  COALESCE($20::jsonb, '{}'::jsonb), COALESCE($21::jsonb, '{}'::jsonb), COALESCE($22::jsonb, '{}'::jsonb))
RETURNING *`;

// $1: the key_id (stable across rotations: a change addressed by any token of a key lands on its row).
// $3/$4: a new token and key_name (a rotation swaps the token on the same row); $5: the version read
// under the rotation lock, used as a fencing token (docs/coherence.md #4). Plain updates pass NULLs.
const UPDATE_KEY = `
UPDATE gh_keys SET
  token = COALESCE($3, token),
  key_name = COALESCE($4, key_name),
  key_alias = CASE WHEN $2::jsonb ? 'key_alias' THEN $2->>'key_alias' ELSE key_alias END,
  models = CASE WHEN $2::jsonb ? 'models' THEN ARRAY(SELECT jsonb_array_elements_text($2->'models')) ELSE models END,
  max_budget = CASE WHEN $2::jsonb ? 'max_budget' THEN ($2->>'max_budget')::float8 ELSE max_budget END,
  spend = CASE WHEN $2::jsonb ? 'spend' THEN ($2->>'spend')::float8 ELSE spend END,
  -- Setting spend starts a new ledger generation, like /key/{key}/reset_spend (sql/0004).
  spend_generation = CASE WHEN $2::jsonb ? 'spend' THEN spend_generation + 1 ELSE spend_generation END,
  budget_duration = CASE WHEN $2::jsonb ? 'budget_duration' THEN $2->>'budget_duration' ELSE budget_duration END,
  budget_reset_at = CASE WHEN $2::jsonb ? 'budget_interval' THEN now() + ($2->>'budget_interval')::interval ELSE budget_reset_at END,
  tpm_limit = CASE WHEN $2::jsonb ? 'tpm_limit' THEN ($2->>'tpm_limit')::bigint ELSE tpm_limit END,
  rpm_limit = CASE WHEN $2::jsonb ? 'rpm_limit' THEN ($2->>'rpm_limit')::bigint ELSE rpm_limit END,
  max_parallel_requests = CASE WHEN $2::jsonb ? 'max_parallel_requests' THEN ($2->>'max_parallel_requests')::integer ELSE max_parallel_requests END,
  metadata = CASE WHEN $2::jsonb ? 'metadata' THEN $2->'metadata' ELSE metadata END,
  user_id = CASE WHEN $2::jsonb ? 'user_id' THEN $2->>'user_id' ELSE user_id END,
  team_id = CASE WHEN $2::jsonb ? 'team_id' THEN $2->>'team_id' ELSE team_id END,
  expires = CASE WHEN $2::jsonb ? 'expires_in_ms' THEN
      CASE WHEN $2->>'expires_in_ms' IS NULL THEN NULL ELSE now() + ($2->>'expires_in_ms')::bigint * interval '1 millisecond' END
    ELSE expires END,
  blocked = CASE WHEN $2::jsonb ? 'blocked' THEN ($2->>'blocked')::boolean ELSE blocked END,
  tags = CASE WHEN $2::jsonb ? 'tags' THEN ARRAY(SELECT jsonb_array_elements_text($2->'tags')) ELSE tags END,
  aliases = CASE WHEN $2::jsonb ? 'aliases' THEN $2->'aliases' ELSE aliases END,
  enforced_params = CASE WHEN $2::jsonb ? 'enforced_params' THEN ARRAY(SELECT jsonb_array_elements_text($2->'enforced_params')) ELSE enforced_params END,
  soft_budget = CASE WHEN $2::jsonb ? 'soft_budget' THEN ($2->>'soft_budget')::float8 ELSE soft_budget END,
  model_max_budget = CASE WHEN $2::jsonb ? 'model_max_budget' THEN $2->'model_max_budget' ELSE model_max_budget END,
  model_rpm_limit = CASE WHEN $2::jsonb ? 'model_rpm_limit' THEN $2->'model_rpm_limit' ELSE model_rpm_limit END,
  model_tpm_limit = CASE WHEN $2::jsonb ? 'model_tpm_limit' THEN $2->'model_tpm_limit' ELSE model_tpm_limit END,
  version = nextval('gh_key_version_seq'),
  updated_at = clock_timestamp()
WHERE key_id = $1::uuid AND ($5::bigint IS NULL OR version = $5)
RETURNING *`;

// A deprecated key still inside its grace, resolved to the active row it points at.
const SELECT_DEPRECATED_FOR_AUTH = `
SELECT k.*, d.revoke_at, d.key_name AS deprecated_key_name
FROM gh_deprecated_keys d JOIN gh_keys k ON k.token = d.active_token
WHERE d.token = $1 AND d.revoke_at > now()`;

// The tombstone version is drawn from the same sequence, so it is newer than any version ever read.
const DELETE_KEYS = `
WITH gone AS (DELETE FROM gh_keys WHERE key_id = ANY($1::uuid[]) RETURNING *)
SELECT gone.*, nextval('gh_key_version_seq') AS tombstone_version FROM gone`;

// $4..$6: a search box's text — an alias prefix ($4, a LIKE pattern), exactly a user id or team id ($5), or exactly a
// key id ($6, only when the text is a UUID). Each arm can use its own index (a bitmap OR), so a search stays an
// index scan over any number of keys.
const KEY_FILTER = `($1::text IS NULL OR key_alias = $1) AND ($2::text IS NULL OR user_id = $2) AND ($3::text IS NULL OR team_id = $3)
  AND ($4::text IS NULL OR key_alias LIKE $4 OR user_id = $5 OR team_id = $5 OR key_id = $6::uuid)`;
// Newest first (as LiteLLM lists them): a key just made is on the first page, not the last. gh_keys_created_at_idx
// is read backwards.
const LIST_KEYS = `SELECT * FROM gh_keys WHERE ${KEY_FILTER} ORDER BY created_at DESC, token DESC LIMIT $7 OFFSET $8`;
const COUNT_KEYS = `SELECT count(*)::int8 AS total FROM gh_keys WHERE ${KEY_FILTER}`;

export async function findKeyByToken(db: Queryable, token: string): Promise<KeyRow | null> {
  const { rows } = await db.query<KeyRow>(SELECT_BY_TOKEN, [token]);
  return rows[0] ?? null;
}

export async function findKeysByAliases(db: Queryable, aliases: string[]): Promise<KeyRow[]> {
  return (await db.query<KeyRow>(SELECT_BY_ALIASES, [aliases])).rows;
}

export async function insertKey(db: Queryable, key: NewKey): Promise<KeyRow> {
  const { rows } = await db.query<KeyRow>(INSERT_KEY, [
    key.token,
    key.key_name,
    key.key_alias ?? null,
    key.models ?? null,
    key.max_budget ?? null,
    key.budget_duration ?? null,
    key.budget_interval ?? null,
    key.tpm_limit ?? null,
    key.rpm_limit ?? null,
    key.max_parallel_requests ?? null,
    key.metadata === undefined ? null : JSON.stringify(key.metadata),
    key.user_id ?? null,
    key.team_id ?? null,
    key.expires_in_ms ?? null,
    key.blocked ?? null,
    key.tags ?? null,
    key.aliases === undefined ? null : JSON.stringify(key.aliases),
    key.enforced_params ?? null,
    key.soft_budget ?? null,
    key.model_max_budget === undefined ? null : JSON.stringify(key.model_max_budget),
    key.model_rpm_limit === undefined ? null : JSON.stringify(key.model_rpm_limit),
    key.model_tpm_limit === undefined ? null : JSON.stringify(key.model_tpm_limit),
  ]);
  return rows[0]!;
}

export async function updateKey(db: Queryable, keyId: string, patch: KeyPatch): Promise<KeyRow | null> {
  const { rows } = await db.query<KeyRow>(UPDATE_KEY, [keyId, JSON.stringify(patch), null, null, null]);
  return rows[0] ?? null;
}

/** Swaps the row's token for a new one (and applies `patch`) only if the row is still at `expectedVersion`. */
export async function rotateKeyToken(db: Queryable, r: { keyId: string; expectedVersion: number; newToken: string; newKeyName: string; patch: KeyPatch }): Promise<KeyRow | null> {
  const { rows } = await db.query<KeyRow>(UPDATE_KEY, [r.keyId, JSON.stringify(r.patch), r.newToken, r.newKeyName, r.expectedVersion]);
  return rows[0] ?? null;
}

/**
 * A token as an admin operation addresses it: the key it belongs to, whether it is that key's current token
 * or a deprecated one still inside its grace, and the row's version as it was read (docs/coherence.md #8).
 * A deprecated token past its revoke_at does not authenticate, so it addresses nothing.
 */
export interface AddressedKey {
  token: string;
  key_id: string;
  addressed_as: "current" | "deprecated";
  version_seen: number;
}

// clock_timestamp(): the grace ends by the database clock at the moment of the read, like authentication.
const RESOLVE_TOKENS = `
SELECT t.token, COALESCE(k.key_id, d.key_id) AS key_id,
  CASE WHEN k.key_id IS NOT NULL THEN 'current' ELSE 'deprecated' END AS addressed_as,
  COALESCE(k.version, dk.version) AS version_seen
FROM unnest($1::text[]) AS t(token)
LEFT JOIN gh_keys k ON k.token = t.token
LEFT JOIN gh_deprecated_keys d ON k.key_id IS NULL AND d.token = t.token AND d.revoke_at > clock_timestamp()
LEFT JOIN gh_keys dk ON dk.key_id = d.key_id
WHERE COALESCE(k.key_id, dk.key_id) IS NOT NULL`;

// Rows locked in key_id order, so two operations over overlapping sets of keys cannot deadlock.
const LOCK_KEYS = "SELECT * FROM gh_keys WHERE key_id = ANY($1::uuid[]) ORDER BY key_id FOR UPDATE";
const SELECT_BY_KEY_ID = "SELECT * FROM gh_keys WHERE key_id = $1";
const LOCK_KEYS_OF_TEAMS = "SELECT key_id FROM gh_keys WHERE team_id = ANY($1::text[]) ORDER BY key_id FOR UPDATE";
const LOCK_KEYS_OF_USERS = "SELECT key_id FROM gh_keys WHERE user_id = ANY($1::text[]) ORDER BY key_id FOR UPDATE";

/** Which keys these tokens address (tokens that address nothing are left out). */
export async function resolveTokens(db: Queryable, tokens: string[]): Promise<AddressedKey[]> {
  if (tokens.length === 0) return [];
  return (await db.query<AddressedKey>(RESOLVE_TOKENS, [tokens])).rows;
}

/**
 * Locks the rows of these keys for the rest of the transaction and returns them as they are now. Every change
 * to a key (rotation included) takes this lock first, so an operation addressed by a token that a concurrent
 * rotation just replaced waits for that rotation and then acts on the key as it committed — never on a token
 * that no longer matches (the delete-races-regenerate bug: a READ COMMITTED re-check by token matched nothing).
 * A key deleted meanwhile is simply absent.
 */
export async function lockKeys(tx: Queryable, keyIds: string[]): Promise<KeyRow[]> {
  if (keyIds.length === 0) return [];
  return (await tx.query<KeyRow>(LOCK_KEYS, [[...new Set(keyIds)]])).rows;
}

/**
 * Locks the keys of these teams or users, in key_id order, before their owners' rows are locked to delete them.
 * Keys first, then owners, is the order every change takes: a key's change locks the key and then holds its team
 * and user against deletion (keys/key-owners.ts). An owner's delete that locked the owner first and met the key
 * second would deadlock with it.
 */
export async function lockKeysOf(tx: Queryable, owner: "team" | "user", ids: string[]): Promise<void> {
  await tx.query(owner === "team" ? LOCK_KEYS_OF_TEAMS : LOCK_KEYS_OF_USERS, [ids]);
}

export async function findKeyByKeyId(db: Queryable, keyId: string): Promise<KeyRow | null> {
  return (await db.query<KeyRow>(SELECT_BY_KEY_ID, [keyId])).rows[0] ?? null;
}

/** The columns an auth record is built from (auth/auth-record.ts): no metadata, spend or timestamps to ship. */
const AUTH_COLUMNS =
  "token, key_id, key_name, key_alias, models, user_id, team_id, expires, blocked, max_budget, tpm_limit, rpm_limit, max_parallel_requests, version, aliases, enforced_params, model_max_budget, model_rpm_limit, model_tpm_limit, tags";
const SELECT_ACTIVE_FOR_AUTH = `SELECT ${AUTH_COLUMNS} FROM gh_keys WHERE token = $1`;

export type AuthColumns = Pick<
  KeyRow,
  | "token"
  | "key_id"
  | "key_name"
  | "key_alias"
  | "models"
  | "user_id"
  | "team_id"
  | "expires"
  | "blocked"
  | "max_budget"
  | "tpm_limit"
  | "rpm_limit"
  | "max_parallel_requests"
  | "version"
  | "aliases"
  | "enforced_params"
  | "model_max_budget"
  | "model_rpm_limit"
  | "model_tpm_limit"
  | "tags"
>;

export interface AuthRow extends AuthColumns {
  /** Set when the token asked for is a deprecated key inside its grace period. */
  revoke_at: Date | null;
  deprecated_key_name: string | null;
}

/**
 * An active key, else a deprecated key inside its grace. Two simple statements rather than one UNION:
 * nearly every look-up is an active key, and the single-table statement plans and runs about three
 * times faster (bench/auth-path.mjs, 1M keys).
 */
export async function findKeyForAuth(db: Queryable, token: string): Promise<AuthRow | null> {
  const active = (await db.query<AuthColumns>(SELECT_ACTIVE_FOR_AUTH, [token])).rows[0];
  if (active) return { ...active, revoke_at: null, deprecated_key_name: null };
  return (await db.query<AuthRow>(SELECT_DEPRECATED_FOR_AUTH, [token])).rows[0] ?? null;
}

export async function deleteKeys(db: Queryable, keyIds: string[]): Promise<Array<KeyRow & { tombstone_version: number }>> {
  return (await db.query<KeyRow & { tombstone_version: number }>(DELETE_KEYS, [keyIds])).rows;
}

export interface KeyListFilter {
  keyAlias: string | null;
  userId: string | null;
  teamId: string | null;
  /** Alias prefix, or exact key id, user id or team id. */
  search?: string | null;
  page: number;
  size: number;
}

export async function listKeys(db: Queryable, filter: KeyListFilter): Promise<{ rows: KeyRow[]; total: number }> {
  const prefix = filter.search ? `${filter.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const uuid = filter.search && isUuid(filter.search) ? filter.search : null;
  const where = [filter.keyAlias, filter.userId, filter.teamId, prefix, filter.search ?? null, uuid];
  const [page, count] = await Promise.all([db.query<KeyRow>(LIST_KEYS, [...where, filter.size, (filter.page - 1) * filter.size]), db.query<{ total: number }>(COUNT_KEYS, where)]);
  return { rows: page.rows, total: count.rows[0]!.total };
}

/** A fresh version, newer than any row read so far: the tombstone version for tokens with no row left. */
export async function nextKeyVersion(db: Queryable): Promise<number> {
  return (await db.query<{ v: number }>("SELECT nextval('gh_key_version_seq') AS v")).rows[0]!.v;
}

// For the token filter (coherence/token-filter-keeper.ts): every token that may authenticate, in pages.
const TOKENS_AFTER = {
  keys: "SELECT token FROM gh_keys WHERE token > $1 ORDER BY token LIMIT $2",
  deprecated: "SELECT token FROM gh_deprecated_keys WHERE token > $1 AND revoke_at > now() ORDER BY token LIMIT $2",
} as const;
const COUNT_TOKENS = "SELECT ((SELECT count(*) FROM gh_keys) + (SELECT count(*) FROM gh_deprecated_keys))::int8 AS n";

export async function tokensAfter(db: Queryable, table: keyof typeof TOKENS_AFTER, after: string, limit: number): Promise<string[]> {
  return (await db.query<{ token: string }>(TOKENS_AFTER[table], [after, limit])).rows.map((r) => r.token);
}

export async function countTokens(db: Queryable): Promise<number> {
  return Number((await db.query<{ n: string }>(COUNT_TOKENS)).rows[0]!.n);
}
