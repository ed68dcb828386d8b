import type { Queryable } from "./db.js";

/**
 * The Postgres fallback of the rotation lock (redis/rotation-lock.ts): while Redis cannot be asked,
 * rotations of one key are serialised by a transaction-level advisory lock on its token hash instead.
 * Like the Redis lock it is an optimisation; the row lock and version fence in the rotation are the guarantee.
 */

// The namespace of rotations: the first key of the two-key form, whose key space is apart from the single
// bigint keys of the gateway's other advisory locks (event order, Idempotency-Key, migrations).
const ROTATION_ADVISORY_CLASS = 7326;
const LOCK_ROTATION = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/** Held until the transaction ends. */
export async function lockRotationAdvisory(tx: Queryable, tokenHash: string): Promise<void> {
  await tx.query(LOCK_ROTATION, [ROTATION_ADVISORY_CLASS, tokenHash]);
}
