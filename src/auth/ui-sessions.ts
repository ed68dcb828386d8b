import { randomBytes, timingSafeEqual } from "node:crypto";
import { AuthenticationError, PermissionError } from "../errors/errors.js";
import type { Database } from "../store/database.js";
import { deleteExpiredUiSessions, deleteUiSession, deleteUiSessionsOfOtherMasterKeys, findUiSession, insertUiSession } from "../store/ui-session-store.js";
import { hashKey as sha256 } from "./key-material.js";
import type { MasterKey } from "./master-key.js";

export interface UiSession {
  csrfToken: string;
  expiresAt: Date;
}

/**
 * Admin UI sessions (docs/admin-ui.md): the master key is exchanged once for a random session token, held by
 * the browser in an HttpOnly cookie; the session lives in Postgres, so every replica honours it and a logout on
 * one is a logout on all. No cache: each UI call reads its row (one primary-key lookup; the UI is not the hot
 * path), which is what makes "logged out everywhere at once" true without an invalidation protocol.
 */
export class UiSessions {
  /** Sessions remember which master key made them; a replica with another master key refuses them. */
  private readonly masterKeyHash: string;

  constructor(
    private readonly db: Database,
    private readonly masterKey: MasterKey,
    masterKeyPlaintext: string,
    private readonly ttlMs: number,
  ) {
    // Salted so the stored value is not the master key's plain sha256 (the hash /metrics or a log might meet).
    this.masterKeyHash = sha256(`gatehouse-ui-session\0${masterKeyPlaintext}`);
  }

  /** The master key for a new session token (returned once, for the cookie). A virtual key cannot log in. */
  async login(presented: unknown): Promise<{ token: string; session: UiSession }> {
    if (typeof presented !== "string" || presented.length === 0) throw new AuthenticationError("Enter the master key.", { code: "missing_master_key" });
    if (!this.masterKey.matches(presented)) throw new AuthenticationError("That is not the master key. Only the master key can log in.", { code: "invalid_master_key" });
    await this.db.query(deleteExpiredUiSessions);
    const token = randomBytes(32).toString("base64url");
    const row = await this.db.query((q) =>
      insertUiSession(q, { sessionHash: sha256(token), csrfToken: randomBytes(24).toString("base64url"), masterKeyHash: this.masterKeyHash, ttlMs: this.ttlMs }),
    );
    return { token, session: { csrfToken: row.csrf_token, expiresAt: row.expires_at } };
  }

  /** The live session behind a cookie's token; 401 when there is none (expired, logged out, master key rotated). */
  async check(token: string): Promise<UiSession> {
    const row = await this.db.query((q) => findUiSession(q, sha256(token), this.masterKeyHash));
    if (!row) throw new AuthenticationError("Your session has ended; log in again.", { code: "session_expired" });
    return { csrfToken: row.csrf_token, expiresAt: row.expires_at };
  }

  /** A state-changing call made with a session must echo its CSRF token (a cross-site form cannot read it). */
  checkCsrf(session: UiSession, presented: string | undefined): void {
    const expected = Buffer.from(session.csrfToken);
    const given = Buffer.from(presented ?? "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new PermissionError("Missing or wrong X-CSRF-Token header for a change made with a session.", { code: "csrf_token_mismatch" });
  }

  async logout(token: string): Promise<void> {
    await this.db.query((q) => deleteUiSession(q, sha256(token)));
  }

  /**
   * At start: the sessions of any other master key end (a rotation ends every session, on every replica, once
   * the first replica with the new key starts). Only at start: a login on a replica still on the old key, in the
   * middle of a rolling rotation, must not end the sessions made with the new one.
   */
  async endOtherMasterKeysSessions(): Promise<number> {
    return this.db.query((q) => deleteUiSessionsOfOtherMasterKeys(q, this.masterKeyHash));
  }
}
