import type { NextFunction, Request, Response } from "express";
import type { Authenticator } from "../auth/authenticator.js";
import type { MasterKey } from "../auth/master-key.js";
import { AuthenticationError, PermissionError } from "./errors.js";
import { bearerToken, locals } from "./request-context.js";

/** Proxy routes: the bearer must be a usable virtual key. The master key is not a virtual key. */
export function requireVirtualKey(authenticator: Authenticator) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const bearer = bearerToken(req);
    if (!bearer) throw new AuthenticationError("Missing API key: send it as 'Authorization: Bearer sk-...'.", "missing_api_key");
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
