import type { Queryable } from "./db.js";

/** The only module that reads or writes `gh_ui_sessions` (sql/0011_admin_ui.sql). Owner: auth/ui-sessions.ts. */

export interface UiSessionRow {
  session_hash: string;
  csrf_token: string;
  expires_at: Date;
}

export async function insertUiSession(db: Queryable, s: { sessionHash: string; csrfToken: string; masterKeyHash: string; ttlMs: number }): Promise<UiSessionRow> {
  const { rows } = await db.query<UiSessionRow>(
    `INSERT INTO gh_ui_sessions (session_hash, csrf_token, master_key_hash, expires_at)
     VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
     RETURNING session_hash, csrf_token, expires_at`,
    [s.sessionHash, s.csrfToken, s.masterKeyHash, s.ttlMs],
  );
  return rows[0]!;
}

/** A live session made with this master key, or null (expired, logged out, or made with another master key). */
export async function findUiSession(db: Queryable, sessionHash: string, masterKeyHash: string): Promise<UiSessionRow | null> {
  const { rows } = await db.query<UiSessionRow>(
    "SELECT session_hash, csrf_token, expires_at FROM gh_ui_sessions WHERE session_hash = $1 AND master_key_hash = $2 AND expires_at > now()",
    [sessionHash, masterKeyHash],
  );
  return rows[0] ?? null;
}

export async function deleteUiSession(db: Queryable, sessionHash: string): Promise<boolean> {
  return ((await db.query("DELETE FROM gh_ui_sessions WHERE session_hash = $1", [sessionHash])).rowCount ?? 0) > 0;
}

export async function deleteExpiredUiSessions(db: Queryable): Promise<number> {
  return (await db.query("DELETE FROM gh_ui_sessions WHERE expires_at <= now()")).rowCount ?? 0;
}

/** Every session made with another master key than this one: a replica started with a new master key ends them. */
export async function deleteUiSessionsOfOtherMasterKeys(db: Queryable, masterKeyHash: string): Promise<number> {
  return (await db.query("DELETE FROM gh_ui_sessions WHERE master_key_hash <> $1", [masterKeyHash])).rowCount ?? 0;
}
