import type { Database } from "../store/database.js";
import type { Queryable } from "../store/db.js";
import { findStoredResult, lockIdempotencyKey, storeResult, type StoredResult } from "../store/idempotency-store.js";
import { isUniqueViolation } from "../store/db.js";
import type { IdempotencyVault } from "./idempotency-vault.js";

/**
 * What a change sees of its Idempotency-Key, inside its own transaction. Without a key both are no-ops, so a
 * change is written once, whether or not the request carried one.
 */
export interface IdempotentAttempt<T> {
  /**
   * First in the change's transaction: waits for a concurrent attempt with the same key to commit, and gives
   * its result if it stored one (then the change must write nothing and answer with it).
   */
  replayed(tx: Queryable): Promise<T | undefined>;
  /** Last in the same transaction: the result every retry gets, committed with the change or not at all. */
  store(tx: Queryable, result: T): Promise<void>;
}

/**
 * The one Idempotency-Key flow of the /key writes (generate, regenerate): look the key up, replay its stored
 * result, or run the change and store its result, sealed (idempotency-vault.ts), in the change's transaction.
 *
 * An earlier result is found in three places: before any work (the common retry, no transaction opened);
 * inside the transaction, after the key's advisory lock (a retry that raced the first attempt waited for it);
 * and after a unique violation on the stored result (a concurrent attempt committed first).
 */
export class IdempotencyFlow {
  constructor(
    private readonly db: Database,
    private readonly vault: IdempotencyVault,
  ) {}

  /** `scope` names the operation, `request` what a retry must repeat exactly (else 409, idempotency_key_reused). */
  async run<T>(scope: string, idemKey: string | undefined, request: unknown, change: (attempt: IdempotentAttempt<T>) => Promise<T>): Promise<T> {
    if (!idemKey) return change(withoutKey<T>());
    const fingerprint = this.vault.fingerprint(scope, request);
    const replay = (stored: StoredResult) => this.vault.open<T>(idemKey, stored, fingerprint);
    const earlier = await this.db.query((q) => findStoredResult(q, scope, idemKey));
    if (earlier) return replay(earlier);
    try {
      return await change({
        replayed: async (tx) => {
          await lockIdempotencyKey(tx, scope, idemKey);
          const stored = await findStoredResult(tx, scope, idemKey);
          return stored ? replay(stored) : undefined;
        },
        store: (tx, result) => storeResult(tx, scope, idemKey, fingerprint, this.vault.seal(idemKey, result)),
      });
    } catch (err) {
      if (!isUniqueViolation(err, "gh_idempotency_pkey")) throw err;
      const stored = await this.db.query((q) => findStoredResult(q, scope, idemKey));
      if (stored) return replay(stored);
      throw err;
    }
  }
}

function withoutKey<T>(): IdempotentAttempt<T> {
  return { replayed: async () => undefined, store: async () => {} };
}
