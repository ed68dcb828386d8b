import type { Queryable } from "./db.js";

/** The only module that touches `gh_idempotency`: first results of requests sent with an Idempotency-Key. */

export interface StoredResult {
  fingerprint: string;
  response: Buffer;
}

const FIND = "SELECT fingerprint, response FROM gh_idempotency WHERE scope = $1 AND idem_key = $2";
const INSERT = "INSERT INTO gh_idempotency (scope, idem_key, fingerprint, response) VALUES ($1, $2, $3, $4)";
const LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
const PRUNE = "DELETE FROM gh_idempotency WHERE created_at < now() - $1::bigint * interval '1 millisecond'";

/**
 * Serialises concurrent requests carrying the same Idempotency-Key until the first one commits, so a
 * retry racing the original waits and then finds its stored result instead of failing on a conflict.
 */
export async function lockIdempotencyKey(tx: Queryable, scope: string, idemKey: string): Promise<void> {
  await tx.query(LOCK, [`idempotency:${scope}:${idemKey}`]);
}

export async function findStoredResult(db: Queryable, scope: string, idemKey: string): Promise<StoredResult | null> {
  return (await db.query<StoredResult>(FIND, [scope, idemKey])).rows[0] ?? null;
}

/** Inside the change's transaction; a concurrent duplicate fails on the primary key and rolls back. */
export async function storeResult(tx: Queryable, scope: string, idemKey: string, fingerprint: string, response: Buffer): Promise<void> {
  await tx.query(INSERT, [scope, idemKey, fingerprint, response]);
}

export async function pruneStoredResults(db: Queryable, retentionMs: number): Promise<number> {
  return (await db.query(PRUNE, [retentionMs])).rowCount ?? 0;
}
