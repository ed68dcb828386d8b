import type { IncomingHttpHeaders } from "node:http";
import type { NextFunction, Request, Response } from "express";
import type { AuthResult, Authenticator } from "../auth/authenticator.js";
import { BearerDigest } from "../auth/key-material.js";
import type { MasterKey } from "../auth/master-key.js";
import { AuthenticationError, PermissionError } from "../errors/errors.js";
import type { UiSessions } from "../auth/ui-sessions.js";
import { recordOf } from "./access-log.js";
import { bearerToken } from "./bearer.js";
import { sessionTokenOf } from "./session-cookie.js";

/** Methods that change nothing: a session may call them without its CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * The master key's identity on the OpenAI routes (LiteLLM lets it call models): every model, no limits, logged
 * and counted as `master-key`. Its key_id is the nil UUID, which no key row has, so nothing is charged to a key.
 */
export const MASTER_IDENTITY: AuthResult = Object.freeze({
  level: "l1",
  team: null,
  record: Object.freeze({
    token: "master",
    keyId: "00000000-0000-0000-0000-000000000000",
    keyName: "master-key",
    keyAlias: null,
    models: [],
    userId: null,
    teamId: null,
    expiresAt: null,
    blocked: false,
    maxBudget: null,
    tpmLimit: null,
    rpmLimit: null,
    maxParallelRequests: null,
    version: 0,
    revokeAt: null,
  }),
}) as AuthResult;

const BEARER_DIGEST = Symbol("bearer digest");
/** An object that lives as long as a client's connection (its socket), holding the digest of its last bearer. */
export type DigestHolder = { [BEARER_DIGEST]?: BearerDigest };

/**
 * Who is calling, from the request's headers alone (docs/security.md: authentication happens before the body is
 * read, so an unauthenticated request costs no body parsing). One implementation for the OpenAI routes and for
 * the express app.
 */
export class CallerAuth {
  constructor(
    private readonly authenticator: Authenticator,
    private readonly masterKey: MasterKey,
    /** `server.master_key_on_proxy`: may the master key call models? */
    private readonly masterKeyOnProxy: boolean,
    /** Admin UI sessions: an alternative to the master key on the admin routes (docs/admin-ui.md). */
    private readonly sessions: UiSessions | null = null,
  ) {}

  /**
   * Proxy routes: a usable virtual key (or the master key, unless `server.master_key_on_proxy` forbids it).
   * `connection` is where the bearer's digest is kept between the requests of one keep-alive connection (a client
   * sends the same key on every request of it): only the hash is reused, the key is authenticated every time.
   * The caller itself, not a promise, when this replica's L1 answers now (Authenticator.held): the usual case, and
   * a promise fewer on the request path; a refusal is always a rejected promise.
   */
  virtualKey(headers: IncomingHttpHeaders, connection?: DigestHolder): AuthResult | Promise<AuthResult> {
    const bearer = bearerToken(headers);
    if (!bearer) return Promise.reject(new AuthenticationError("Missing API key: send it as 'Authorization: Bearer sk-...'.", { code: "missing_api_key" }));
    let digest = connection?.[BEARER_DIGEST];
    if (digest === undefined || digest.bearer !== bearer) {
      digest = new BearerDigest(bearer);
      if (connection !== undefined) connection[BEARER_DIGEST] = digest;
    }
    if (this.masterKey.matchesDigest(digest.bytes)) {
      if (!this.masterKeyOnProxy)
        return Promise.reject(
          new PermissionError("The master key may not call models on this gateway (server.master_key_on_proxy: forbid); use a virtual key.", { code: "master_key_not_allowed" }),
        );
      return Promise.resolve(MASTER_IDENTITY);
    }
    let held: AuthResult | undefined;
    try {
      held = this.authenticator.held(digest.hex);
    } catch (err) {
      return Promise.reject(err);
    }
    return held ?? this.authenticator.authenticate(bearer, digest.hex);
  }

  /**
   * Admin routes: the master key, or an admin UI session (its cookie, and for a change its CSRF token). A valid
   * virtual key gets 403 (known, not an admin); anything else 401. A bearer, when sent, decides alone.
   */
  async admin(headers: IncomingHttpHeaders, method = "GET"): Promise<void> {
    const bearer = bearerToken(headers);
    if (this.masterKey.matches(bearer)) return;
    const sessionToken = bearer || !this.sessions ? undefined : sessionTokenOf(headers);
    if (sessionToken && this.sessions) {
      const session = await this.sessions.check(sessionToken);
      if (!SAFE_METHODS.has(method)) {
        const csrf = headers["x-csrf-token"];
        this.sessions.checkCsrf(session, typeof csrf === "string" ? csrf : undefined);
      }
      return;
    }
    if (!bearer) throw new AuthenticationError("Missing master key: send it as 'Authorization: Bearer <master key>'.", { code: "missing_api_key" });
    const isVirtualKey = await this.authenticator.authenticate(bearer).then(
      () => true,
      () => false,
    );
    if (isVirtualKey) throw new PermissionError("This route needs the master key; a virtual key is not an admin.", { code: "not_admin" });
    throw new AuthenticationError("Invalid master key.", { code: "invalid_master_key" });
  }
}

/** Express middleware: the virtual key of a request the express app serves under a proxy prefix. */
export function requireVirtualKey(auth: CallerAuth) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    recordOf(res).auth = await auth.virtualKey(req.headers);
    next();
  };
}

/** Express middleware: the master key. */
export function requireMasterKey(auth: CallerAuth) {
  return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
    await auth.admin(req.headers, req.method);
    next();
  };
}
