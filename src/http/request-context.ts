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
  /** Seconds spent waiting on the upstream (proxy routes that reached it): the rest is our overhead. */
  upstreamSeconds?: number;
}

/** Told about every finished request (metrics). Only the route pattern is passed, never the URL: paths carry keys. */
export type RequestObserver = (route: string, model: string | undefined, status: number, seconds: number, upstreamSeconds: number | undefined) => void;

// Requests refused before reaching a route (401 from the auth middleware) are labelled by their first
// path segment when it is one of ours; anything else is "unmatched", so scans cannot blow up label counts.
const KNOWN_PREFIXES = new Set(["v1", "key", "chat", "completions", "embeddings", "models", "health", "metrics", "debug"]);

function routePattern(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path === "string") return path;
  if (Array.isArray(path) && typeof path[0] === "string") return path[0];
  const first = req.path.split("/", 2)[1] ?? "";
  return KNOWN_PREFIXES.has(first) ? `/${first}/*` : "unmatched";
}

export function locals(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/** Assigns a request id and writes one log line per request: id, route, status, latency, key_name, model. */
export function requestLog(logger: Logger, observe?: RequestObserver) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const ctx = locals(res);
    const given = req.headers["x-request-id"];
    ctx.requestId = typeof given === "string" && given.length > 0 && given.length <= 128 ? given : randomUUID();
    ctx.startedAt = performance.now();
    res.setHeader("x-request-id", ctx.requestId);
    res.once("close", () => {
      const seconds = (performance.now() - ctx.startedAt) / 1000;
      observe?.(routePattern(req), ctx.model, res.statusCode, seconds, ctx.upstreamSeconds);
      logger.info(
        {
          request_id: ctx.requestId,
          method: req.method,
          route: routePattern(req),
          path: loggablePath(req),
          status: res.statusCode,
          latency_ms: Math.round(seconds * 100_000) / 100,
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

/**
 * The request path without anything that may be a key: routes such as /key/{key}/regenerate carry one,
 * and a client may put one anywhere. The query string is never logged (/key/info?key=…).
 */
export function loggablePath(req: Request): string {
  // A path that does not decode is not logged at all: what it holds cannot be inspected for keys.
  try {
    decodeURIComponent(req.path);
  } catch {
    return "[path not validly percent-encoded]";
  }
  const segments = req.path.split("/");
  for (let i = 1; i < segments.length; i++) {
    if (segments[i]!.includes("sk-") || (segments[i - 1] === "key" && i < segments.length - 1)) segments[i] = "[redacted]";
  }
  return segments.join("/");
}

/** express.json's `verify` hook: remembers the body's bytes on the request. */
export function keepRawBody(req: unknown, _res: unknown, buf: Buffer): void {
  (req as { rawBody?: Buffer }).rawBody = buf;
}

export function rawBody(req: Request): Buffer | undefined {
  return (req as { rawBody?: Buffer }).rawBody;
}

/**
 * The bearer token of a request: `Authorization: Bearer …`, or the `x-api-key` header (Anthropic-style clients,
 * as LiteLLM accepts), or the `api-key` header Azure clients send.
 */
export function bearerToken(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1] : undefined;
  }
  for (const name of ["x-api-key", "api-key"] as const) {
    const value = req.headers[name];
    if (typeof value === "string" && value.length > 0) return value;
  }
  return undefined;
}
