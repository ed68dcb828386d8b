import { keyDisplayName, toTokenHash } from "../auth/key-material.js";
import { NotFoundError } from "../errors/errors.js";
import type { Database } from "../store/database.js";
import { deprecatedTokensOfKeys } from "../store/deprecated-key-store.js";
import { deleteKeysByTokens, findKeysByTokens } from "../store/key-store.js";
import { commitChangeWithEvent, type ChangeLog, type CommittedEventSink } from "../coherence/change-commit.js";

/**
 * The delete as it was before keys were locked by key_id: rows are read by token without a lock and deleted
 * by token. Under READ COMMITTED a rotation that commits between the read and the DELETE swaps the token,
 * the DELETE re-checks `token = ANY(...)` on the new row version and matches nothing, and the caller gets 200
 * (or, with one key, a 500 from the maximum of an empty list). Reachable only through the test switch
 * `delete-race` (testing/reinstated-bugs.ts), so the history checker can show it catches this.
 */
export function legacyDeleteByTokens(db: Database, events: CommittedEventSink, keys: string[], log?: ChangeLog) {
  return commitChangeWithEvent(
    db,
    events,
    async (tx) => {
      const tokens = [...new Set(keys.map(toTokenHash))];
      const rows = await findKeysByTokens(tx, tokens);
      if (rows.length !== tokens.length) {
        const found = new Set(rows.map((r) => r.token));
        const missing = keys.filter((k) => !found.has(toTokenHash(k))).map((k) => (k.startsWith("sk-") ? keyDisplayName(k) : k));
        throw new NotFoundError(`keys not found: ${missing.join(", ")}; nothing was deleted`, "keys", "key_not_found");
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
