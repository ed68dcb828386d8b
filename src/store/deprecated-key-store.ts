import type { Queryable } from "./db.js";

/** The only module that writes `gh_deprecated_keys`: old tokens that stay valid until their revoke_at. */

export interface DeprecatedKeyRow {
  token: string;
  key_id: string;
  active_token: string;
  key_name: string;
  revoke_at: Date;
}

// clock_timestamp(), not now(): the grace runs from (as close as we can get to) the commit, not from the
// start of a transaction that may have waited on locks (docs/coherence.md #1: revoke_at = commit time + G).
const INSERT_DEPRECATED = `
INSERT INTO gh_deprecated_keys (token, key_id, active_token, key_name, revoke_at)
VALUES ($1, $2, $3, $4, clock_timestamp() + $5::bigint * interval '1 millisecond')
RETURNING *`;

// Run right before COMMIT (after the event-order lock): the grace is counted from there.
const START_GRACE = "UPDATE gh_deprecated_keys SET revoke_at = clock_timestamp() + $2::bigint * interval '1 millisecond' WHERE token = $1 RETURNING revoke_at";

// Each older key keeps its own revoke_at; only what it points at changes.
const REPOINT = "UPDATE gh_deprecated_keys SET active_token = $2 WHERE key_id = $1 RETURNING token";
const TOKENS_FOR_KEY = "SELECT token FROM gh_deprecated_keys WHERE key_id = $1";
const TOKENS_FOR_KEYS = "SELECT token FROM gh_deprecated_keys WHERE key_id = ANY($1::uuid[])";
const FIND = "SELECT * FROM gh_deprecated_keys WHERE token = $1";
// Ending a grace early removes the rows: a token without a row does not authenticate.
const END_GRACE = "DELETE FROM gh_deprecated_keys WHERE key_id = $1 RETURNING *";

// A margin past revoke_at before a row is removed: the request path already refuses it by the clock.
const SWEEP_EXPIRED = `
DELETE FROM gh_deprecated_keys WHERE token IN (
  SELECT token FROM gh_deprecated_keys WHERE revoke_at < now() ORDER BY revoke_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING token`;

export async function insertDeprecatedKey(tx: Queryable, row: { token: string; keyId: string; activeToken: string; keyName: string; graceMs: number }): Promise<DeprecatedKeyRow> {
  const { rows } = await tx.query<DeprecatedKeyRow>(INSERT_DEPRECATED, [row.token, row.keyId, row.activeToken, row.keyName, row.graceMs]);
  return rows[0]!;
}

/** Points every deprecated key of `keyId` at `activeToken`; returns their tokens. */
export async function repointDeprecatedKeys(tx: Queryable, keyId: string, activeToken: string): Promise<string[]> {
  return (await tx.query<{ token: string }>(REPOINT, [keyId, activeToken])).rows.map((r) => r.token);
}

export async function deprecatedTokensOf(db: Queryable, keyId: string): Promise<string[]> {
  return (await db.query<{ token: string }>(TOKENS_FOR_KEY, [keyId])).rows.map((r) => r.token);
}

export async function deprecatedTokensOfKeys(db: Queryable, keyIds: string[]): Promise<string[]> {
  if (keyIds.length === 0) return [];
  return (await db.query<{ token: string }>(TOKENS_FOR_KEYS, [keyIds])).rows.map((r) => r.token);
}

export async function findDeprecatedKey(db: Queryable, token: string): Promise<DeprecatedKeyRow | null> {
  return (await db.query<DeprecatedKeyRow>(FIND, [token])).rows[0] ?? null;
}

/** Removes up to `limit` rows past revoke_at; concurrent sweepers skip each other's rows. */
export async function sweepExpiredDeprecatedKeys(tx: Queryable, limit: number): Promise<string[]> {
  return (await tx.query<{ token: string }>(SWEEP_EXPIRED, [limit])).rows.map((r) => r.token);
}

/** Ends the grace of every deprecated token of `keyId` now; returns the rows removed. */
export async function endGraceOf(tx: Queryable, keyId: string): Promise<DeprecatedKeyRow[]> {
  return (await tx.query<DeprecatedKeyRow>(END_GRACE, [keyId])).rows;
}

/** Sets a just-inserted deprecated key's revoke_at to now + grace; called as the last step before COMMIT. */
export async function startGraceNow(tx: Queryable, token: string, graceMs: number): Promise<Date> {
  return (await tx.query<{ revoke_at: Date }>(START_GRACE, [token, graceMs])).rows[0]!.revoke_at;
}

/** The key's older tokens still inside their grace (no hashes: names and windows only), oldest first. */
export async function findGraceTokens(db: Queryable, keyId: string): Promise<Array<{ key_name: string; created_at: Date; revoke_at: Date }>> {
  const { rows } = await db.query<{ key_name: string; created_at: Date; revoke_at: Date }>(
    "SELECT key_name, created_at, revoke_at FROM gh_deprecated_keys WHERE key_id = $1 AND revoke_at > now() ORDER BY created_at",
    [keyId],
  );
  return rows;
}
