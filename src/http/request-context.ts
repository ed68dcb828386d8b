import { randomUUID } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import type { Logger } from "../logger.js";
import type { AuthResult } from "../auth/authenticator.js";

/** What the request path learns about a request, for the one log line written when it ends. */
export interface RequestLocals {
  requestId: string;
  startedAt: number;
  auth?: AuthResult;
  model?: string;
}

export function locals(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/** Assigns a request id and writes one log line per request: id, route, status, latency, key_name, model. */
export function requestLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const ctx = locals(res);
    const given = req.headers["x-request-id"];
    ctx.requestId = typeof given === "string" && given.length > 0 && given.length <= 128 ? given : randomUUID();
    ctx.startedAt = performance.now();
    res.setHeader("x-request-id", ctx.requestId);
    res.once("close", () => {
      logger.info(
        {
          request_id: ctx.requestId,
          method: req.method,
          route: req.originalUrl.split("?", 1)[0],
          status: res.statusCode,
          latency_ms: Math.round((performance.now() - ctx.startedAt) * 100) / 100,
          key_name: ctx.auth?.record.keyName,
          model: ctx.model,
          aborted: !res.writableFinished || undefined,
        },
        "request",
      );
    });
    next();
  };
}

/** express.json's `verify` hook: remembers the body's bytes on the request. */
export function keepRawBody(req: unknown, _res: unknown, buf: Buffer): void {
  (req as { rawBody?: Buffer }).rawBody = buf;
}

export function rawBody(req: Request): Buffer | undefined {
  return (req as { rawBody?: Buffer }).rawBody;
}

/** The bearer token of a request: `Authorization: Bearer …`, or the `api-key` header Azure clients send. */
export function bearerToken(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1] : undefined;
  }
  const apiKey = req.headers["api-key"];
  return typeof apiKey === "string" && apiKey.length > 0 ? apiKey : undefined;
}
