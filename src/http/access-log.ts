import type { NextFunction, Request, Response } from "express";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AuthResult } from "../auth/authenticator.js";
import type { Logger } from "../logger.js";
import type { Metrics, RouteRecorder } from "../metrics/metrics.js";
import { loggablePath, pathOf } from "./loggable-path.js";
import { newRequestId } from "./request-id.js";

/** What the request path learns about a request, for the one log line written when it ends. */
export interface RequestRecord {
  requestId: string;
  startedAt: number;
  auth?: AuthResult | undefined;
  model?: string | undefined;
  /** Seconds spent waiting on the upstream (proxy routes that reached it): the rest is our overhead. */
  upstreamSeconds?: number | undefined;
}

const MAX_REQUEST_ID = 128;

/**
 * One log line and one metric observation per request, whoever served it (the OpenAI routes or the express
 * app): request id, route pattern, path without keys, status, latency, key_name, model. Only the route pattern
 * is a metric label, never the URL: paths carry keys, and scans must not blow up label counts.
 * The logger is pino on an asynchronous destination: a request never waits on a write to stdout.
 */
export class AccessLog {
  /**
   * The access log's own logger, without the path-based redaction every other line goes through (it costs
   * ~5 µs a line): its fields are fixed and built here, the path already without keys (loggablePath) and the
   * key named only by its key_name (sk-...abcd). test/log-redaction.test.ts scans these lines for keys.
   */
  private readonly lines: Logger;

  constructor(
    logger: Logger,
    private readonly metrics: Metrics | undefined,
  ) {
    this.lines = logger.child({}, { redact: [] });
  }

  /** Assigns the request id (the client's `x-request-id` when it is sane) and echoes it. */
  begin(req: IncomingMessage, res: ServerResponse, record: RequestRecord): void {
    const given = req.headers["x-request-id"];
    record.requestId = typeof given === "string" && given.length > 0 && given.length <= MAX_REQUEST_ID ? given : newRequestId();
    record.startedAt = performance.now();
    res.setHeader("x-request-id", record.requestId);
  }

  /** The request is over (answered, failed or abandoned by the client). */
  end(req: IncomingMessage, res: ServerResponse, route: string, recorder: RouteRecorder | undefined, record: RequestRecord): void {
    const seconds = (performance.now() - record.startedAt) / 1000;
    (recorder ?? this.metrics?.route(route))?.finished(record.model, res.statusCode, seconds, record.upstreamSeconds);
    this.lines.info(
      {
        request_id: record.requestId,
        method: req.method,
        route,
        path: loggablePath(pathOf((req as { originalUrl?: string }).originalUrl ?? req.url)),
        status: res.statusCode,
        latency_ms: Math.round(seconds * 100_000) / 100,
        key_name: record.auth?.record.keyName,
        model: record.model,
        aborted: !res.writableFinished || undefined,
      },
      "request",
    );
  }

  /** The metric recorder of a fixed route, made once by the caller. */
  recorder(route: string): RouteRecorder | undefined {
    return this.metrics?.route(route);
  }
}

// Requests refused before reaching a route (401 from the auth middleware) are labelled by their first
// path segment when it is one of ours; anything else is "unmatched", so scans cannot blow up label counts.
const KNOWN_PREFIXES = new Set(["v1", "key", "chat", "completions", "embeddings", "models", "health", "metrics", "debug"]);

function expressRoutePattern(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path === "string") return path;
  if (Array.isArray(path) && typeof path[0] === "string") return path[0];
  const first = req.path.split("/", 2)[1] ?? "";
  return KNOWN_PREFIXES.has(first) ? `/${first}/*` : "unmatched";
}

/** The express app's request record (the auth middleware fills in `auth`). */
export function recordOf(res: Response): RequestRecord {
  return res.locals as RequestRecord;
}

/** The access log for everything the express app serves. */
export function expressAccessLog(log: AccessLog) {
  return (req: Request, res: Response, next: NextFunction): void => {
    log.begin(req, res, recordOf(res));
    res.once("close", () => log.end(req, res, expressRoutePattern(req), undefined, recordOf(res)));
    next();
  };
}
