import { keyDisplayName, toTokenHash } from "../auth/key-material.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";
import { NotFoundError } from "../errors/errors.js";
import type { Queryable } from "../store/db.js";
import type { Database } from "../store/database.js";
import { deprecatedTokensOfKeys } from "../store/deprecated-key-store.js";
import type { KeyRow } from "../store/key-store.js";

/**
 * The bug `delete-race` (testing/reinstated-bugs.ts) brings back: the delete as it was before keys were locked by
 * key_id. Rows are read by token without a lock and deleted by token. Under READ COMMITTED a rotation that commits
 * between the read and the DELETE swaps the token, the DELETE re-checks `token = ANY(...)` on the new row version
 * and matches nothing, and the caller gets 200 (or, with one key, a 500 from the maximum of an empty list).
 * Reached only from KeyService.delete while the switch is on, so the history checker can show it catches this.
 * Its statements live here, not in store/key-store.ts: no production path runs them.
 */
export function deleteByTokensUnlocked(db: Database, events: CommittedEventSink, keys: string[], log?: ChangeLog) {
  return commitChangeWithEvent(
    db,
    events,
    async (tx) => {
      const tokens = [...new Set(keys.map(toTokenHash))];
      const rows = await findKeysByTokens(tx, tokens);
      if (rows.length !== tokens.length) {
        const found = new Set(rows.map((r) => r.token));
        const missing = keys.filter((k) => !found.has(toTokenHash(k))).map((k) => (k.startsWith("sk-") ? keyDisplayName(k) : k));
        throw new NotFoundError(`keys not found: ${missing.join(", ")}; nothing was deleted`, { code: "key_not_found", param: "keys" });
      }
      const deprecated = await deprecatedTokensOfKeys(
        tx,
        rows.map((r) => r.key_id),
      );
      const deleted = await deleteKeysByTokens(
        tx,
        rows.map((r) => r.token),
      );
      const version = Math.max(...deleted.map((r) => Number(r.tombstone_version)));
      return { result: { deleted_keys: keys }, stale: { kind: "delete" as const, tokens: [...deleted.map((r) => r.token), ...deprecated], version } };
    },
    log,
  );
}

const SELECT_BY_TOKENS = "SELECT * FROM gh_keys WHERE token = ANY($1::text[])";
// The tombstone version is drawn from the same sequence as store/key-store.ts DELETE_KEYS's.
const DELETE_KEYS_BY_TOKEN = `
WITH gone AS (DELETE FROM gh_keys WHERE token = ANY($1::text[]) RETURNING *)
SELECT gone.*, nextval('gh_key_version_seq') AS tombstone_version FROM gone`;

async function findKeysByTokens(db: Queryable, tokens: string[]): Promise<KeyRow[]> {
  return (await db.query<KeyRow>(SELECT_BY_TOKENS, [tokens])).rows;
}

async function deleteKeysByTokens(db: Queryable, tokens: string[]): Promise<Array<KeyRow & { tombstone_version: number }>> {
  return (await db.query<KeyRow & { tombstone_version: number }>(DELETE_KEYS_BY_TOKEN, [tokens])).rows;
}
