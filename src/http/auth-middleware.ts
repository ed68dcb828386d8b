import type { NextFunction, Request, Response } from "express";
import type { AuthResult, Authenticator } from "../auth/authenticator.js";
import type { MasterKey } from "../auth/master-key.js";
import { AuthenticationError, PermissionError } from "../errors/errors.js";
import { bearerToken, locals } from "./request-context.js";

/**
 * The master key's identity on the OpenAI routes (LiteLLM lets it call models): every model, no limits, logged
 * and counted as `master-key`. Its key_id is the nil UUID, which no key row has, so nothing is charged to a key.
 */
export const MASTER_IDENTITY: AuthResult = Object.freeze({
  level: "l1",
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

/**
 * Proxy routes: the bearer must be a usable virtual key (or the master key, unless `server.master_key_on_proxy`
 * forbids it). Runs before the body is read: an unauthenticated request costs no body parsing.
 */
export function requireVirtualKey(authenticator: Authenticator, masterKey: MasterKey, masterKeyAllowed: boolean) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const bearer = bearerToken(req);
    if (!bearer) throw new AuthenticationError("Missing API key: send it as 'Authorization: Bearer sk-...'.", "missing_api_key");
    if (masterKey.matches(bearer)) {
      if (!masterKeyAllowed) throw new PermissionError("The master key may not call models on this gateway (server.master_key_on_proxy: forbid); use a virtual key.", "master_key_not_allowed");
      locals(res).auth = MASTER_IDENTITY;
      return next();
    }
    locals(res).auth = await authenticator.authenticate(bearer);
    next();
  };
}

/** Admin routes: the master key only. A valid virtual key gets 403 (known, not an admin); anything else 401. */
export function requireMasterKey(masterKey: MasterKey, authenticator: Authenticator) {
  return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
    const bearer = bearerToken(req);
    if (masterKey.matches(bearer)) return next();
    if (!bearer) throw new AuthenticationError("Missing master key: send it as 'Authorization: Bearer <master key>'.", "missing_api_key");
    const isVirtualKey = await authenticator.authenticate(bearer).then(
      () => true,
      () => false,
    );
    if (isVirtualKey) throw new PermissionError("This route needs the master key; a virtual key is not an admin.", "not_admin");
    throw new AuthenticationError("Invalid master key.", "invalid_master_key");
  };
}
