import type { Queryable } from "../store/db.js";
import { deprecatedTokensOfKeys } from "../store/deprecated-key-store.js";
import { lockKeys, resolveTokens, type AddressedKey, type KeyRow } from "../store/key-store.js";
import { reinstated } from "../testing/reinstated-bugs.js";

/** A key an admin operation named by one of its tokens, its row locked for the rest of the transaction. */
export interface LockedKey {
  row: KeyRow;
  /** How the caller named it: by its current token, or by a deprecated one in grace. */
  addressedAs: AddressedKey["addressed_as"];
  /** The row version when the token was resolved, before the lock: a rotation's fencing token. */
  versionSeen: number;
  /** The token the caller gave. */
  token: string;
}

export interface AddressedKeys {
  locked: LockedKey[];
  /** Tokens that address no key (unknown, deleted, or a deprecated key past its revoke_at). */
  missing: string[];
}

/**
 * Every token that authenticates is addressable (docs/coherence.md #8): an admin operation given a key's current
 * token, or a deprecated token still inside its grace, acts on that key. Resolution and locking happen in the
 * operation's own transaction, in that order: resolve token → key_id, then lock the key's row by key_id
 * (stable across rotations). A rotation of the same key holds the same row lock, so the operation is
 * serialised with it and sees the key as the rotation committed it.
 */
export async function lockKeysByTokens(tx: Queryable, tokens: readonly string[]): Promise<AddressedKeys> {
  let addressed = await resolveTokens(tx, [...new Set(tokens)]);
  if (reinstated("grace-404")) addressed = addressed.filter((a) => a.addressed_as === "current");
  const rows = new Map(
    (
      await lockKeys(
        tx,
        addressed.map((a) => a.key_id),
      )
    ).map((r) => [r.key_id, r]),
  );
  const locked: LockedKey[] = [];
  for (const a of addressed) {
    const row = rows.get(a.key_id);
    // Deleted between the resolution and the lock: the token addresses nothing any more.
    if (row) locked.push({ row, addressedAs: a.addressed_as, versionSeen: Number(a.version_seen), token: a.token });
  }
  const found = new Set(locked.map((l) => l.token));
  return { locked, missing: tokens.filter((t) => !found.has(t)) };
}

/** The key one token addresses, locked; null when it addresses nothing. */
export async function lockKeyByToken(tx: Queryable, token: string): Promise<LockedKey | null> {
  return (await lockKeysByTokens(tx, [token])).locked[0] ?? null;
}

/**
 * Every token a key's cached records live under: its current token and every deprecated token (each cached
 * as the key's record). A change to the key makes all of them stale. Read under the row lock, so no rotation
 * can add one meanwhile.
 */
export async function allTokensOf(tx: Queryable, rows: readonly KeyRow[]): Promise<string[]> {
  return [
    ...rows.map((r) => r.token),
    ...(await deprecatedTokensOfKeys(
      tx,
      rows.map((r) => r.key_id),
    )),
  ];
}
