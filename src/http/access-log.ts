import type { NextFunction, Request, Response } from "express";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AuthResult } from "../auth/authenticator.js";
import { pino } from "pino";
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
  /**
   * The gateway's own seconds, for a request answered from the upstream: from its arrival to the upstream call,
   * plus from the answer's last upstream byte to the last byte handed to the client's socket (docs/performance.md).
   */
  ownSeconds?: number | undefined;
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
    this.writeLine = lineWriter(this.lines);
  }

  /** Writes one access line as pino would, straight to its destination; null where pino must write it itself. */
  private readonly writeLine: ((fields: string) => void) | null;

  /** Assigns the request id (the client's `x-request-id` when it is sane) and echoes it. */
  begin(req: IncomingMessage, res: ServerResponse, record: RequestRecord): void {
    this.identify(req, record);
    res.setHeader("x-request-id", record.requestId);
  }

  /**
   * Assigns the request id and starts the clock, without echoing the id: for a caller that puts `x-request-id` in
   * every answer's head itself (api-routes.ts writes an answer's head in one `writeHead`).
   */
  identify(req: IncomingMessage, record: RequestRecord): void {
    const given = req.headers["x-request-id"];
    record.requestId = typeof given === "string" && given.length > 0 && given.length <= MAX_REQUEST_ID ? given : newRequestId();
    record.startedAt = performance.now();
  }

  /** The request is over (answered, failed or abandoned by the client). */
  end(req: IncomingMessage, res: ServerResponse, route: string, recorder: RouteRecorder | undefined, record: RequestRecord): void {
    const seconds = (performance.now() - record.startedAt) / 1000;
    (recorder ?? this.metrics?.route(route))?.finished(record.model, res.statusCode, seconds, record.ownSeconds);
    const path = loggablePath(pathOf((req as { originalUrl?: string }).originalUrl ?? req.url));
    const latencyHundredths = Math.round(seconds * 100_000);
    const keyName = record.auth?.record.keyName;
    if (this.writeLine !== null) {
      if (!this.lines.isLevelEnabled("info")) return;
      // The fields in pino's order and spelling; an undefined field is left out, as pino leaves it out.
      this.writeLine(
        `,"request_id":${jsonString(record.requestId)},"method":${jsonString(req.method ?? "")},"route":${jsonString(route)},"path":${jsonString(path)},"status":${res.statusCode},"latency_ms":${hundredthsText(latencyHundredths)}${keyName === undefined ? "" : `,"key_name":${jsonString(keyName)}`}${record.model === undefined ? "" : `,"model":${jsonString(record.model)}`}${res.writableFinished ? "" : ',"aborted":true'}`,
      );
      return;
    }
    this.lines.info(
      {
        request_id: record.requestId,
        method: req.method,
        route,
        path,
        status: res.statusCode,
        latency_ms: latencyHundredths / 100,
        key_name: keyName,
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

/**
 * One line per request is the most any logger here writes, and pino's generic path (a loop over the fields, a
 * serializer look-up for each) was a tenth of the gateway's own time per request. The access line's fields are
 * fixed, so they are written as pino writes them: `{"level":30,"time":…` and the logger's bindings, the fields,
 * `"msg":"request"}` — byte for byte what `info(fields, "request")` gives (test/log-redaction.test.ts parses it).
 * Only for pino's default output (epoch time, no formatter): any other logger keeps pino's own path.
 */
function lineWriter(logger: Logger): ((fields: string) => void) | null {
  const stream = (logger as unknown as Record<symbol, { write?: (s: string) => void }>)[pino.symbols.streamSym];
  const bindings = (logger as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym];
  const time = (logger as unknown as Record<symbol, unknown>)[pino.symbols.timeSym];
  if (typeof stream?.write !== "function" || typeof bindings !== "string" || time !== pino.stdTimeFunctions.epochTime) return null;
  const opening = `{"level":${logger.levels.values.info},"time":`;
  const closing = `,"msg":"request"}\n`;
  // The time's digits, made once a millisecond: an epoch time is not a small integer to V8, and writing one out
  // goes through its shortest-digits search for doubles; at saturation ten lines or more share a millisecond.
  let ms = 0;
  let msText = "0";
  return (fields) => {
    const now = Date.now();
    if (now !== ms) {
      ms = now;
      msText = String(now);
    }
    stream.write!(`${opening}${msText}${bindings}${fields}${closing}`);
  };
}

/**
 * `hundredths / 100`, for a whole number of hundredths, as JSON.stringify writes it (`7`, `7.5`, `7.25`, `0.05`): the
 * digits of two integers, where writing out the double `7.25` goes through V8's shortest-digits search. The shortest
 * form of a whole number of hundredths has at most two decimals, and none ends in 0. Anything else is written as the
 * double it makes. Exported for its test.
 */
export function hundredthsText(hundredths: number): string {
  if (!Number.isInteger(hundredths) || hundredths < 0 || hundredths > 2_147_483_647) return String(hundredths / 100);
  const whole = Math.floor(hundredths / 100);
  const rest = hundredths - whole * 100;
  if (rest === 0) return `${whole}`;
  if (rest % 10 === 0) return `${whole}.${rest / 10}`;
  return rest < 10 ? `${whole}.0${rest}` : `${whole}.${rest}`;
}

/**
 * `JSON.stringify` of a string. The usual field of an access line (an id, a route, a path, a key's or a model's name)
 * is printable ASCII without a quote or a backslash, which JSON writes as it is: it is quoted here, checked by a loop
 * over its characters instead of a call into V8's serializer (six such calls were about half of what writing a line
 * cost, in a callgrind profile). Anything else goes to JSON.stringify.
 */
function jsonString(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(text);
  }
  return `"${text}"`;
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
