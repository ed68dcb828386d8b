import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { BadRequestError } from "../errors/errors.js";

/**
 * Reads a JSON request body for the OpenAI routes, with the rules express.json applies to the admin API:
 * `Content-Type: application/json` (utf-8), a size limit on the decoded bytes, gzip / deflate / br
 * Content-Encoding, strict JSON (an object or an array; an empty body is `{}`). Errors carry body-parser's
 * `type` names so one mapping (error-mapping.ts) turns them into 4xx answers.
 *
 * Calls `resolve` with the bytes as the client sent them (decoded): forwarded upstream as they are when nothing in
 * them has to change; or `reject`, once. Callbacks rather than a promise: on the model API routes that is a turn of
 * the event loop fewer per request (docs/performance.md, "The straight path").
 */
export function readJsonBodyThen(req: IncomingMessage, limit: number, resolve: (body: Buffer) => void, reject: (err: unknown) => void): void {
  const contentType = req.headers["content-type"];
  if (contentType === undefined || !isJsonMediaType(contentType)) {
    reject(new BadRequestError("request body must be a JSON object (Content-Type: application/json)"));
    return;
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]?.toLowerCase();
  if (charset !== undefined && !charset.startsWith("utf-")) {
    reject(typed("charset.unsupported", 415));
    return;
  }
  const declared = Number(req.headers["content-length"]);
  const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
  if (encoding === "identity" && declared > limit) {
    reject(typed("entity.too.large", 413));
    return;
  }
  let source: Readable = req;
  if (encoding === "gzip" || encoding === "x-gzip") source = req.pipe(createGunzip());
  else if (encoding === "deflate") source = req.pipe(createInflate());
  else if (encoding === "br") source = req.pipe(createBrotliDecompress());
  else if (encoding !== "identity") {
    reject(typed("encoding.unsupported", 415));
    return;
  }
  const reader: BodyReader = { chunks: [], size: 0, limit, resolve, reject, source, done: false };
  (source as Tagged)[READER] = reader;
  // `on`, not `once`: every listener does nothing once the reader is done, and `once` wraps each in a closure of its
  // own, per request.
  source.on("data", onData);
  source.on("end", onEnd);
  source.on("error", onError);
  if (source !== req) {
    (req as Tagged)[READER] = reader;
    req.on("error", onError);
  }
  req.on("aborted", onAborted);
  (req as Tagged)[READER] = reader;
}

/** The media type is application/json, with parameters or not (what express.json accepts by default). */
function isJsonMediaType(value: string): boolean {
  const semicolon = value.indexOf(";");
  const type = (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase();
  return type === "application/json";
}

/** Parses a body read by readJsonBodyThen: strict JSON, an object or an array; empty is `{}`. */
export function parseJsonBody(raw: Buffer): unknown {
  let i = 0;
  while (i < raw.length && (raw[i] === 0x20 || raw[i] === 0x0a || raw[i] === 0x0d || raw[i] === 0x09)) i++;
  if (i === raw.length) return {};
  if (raw[i] !== 0x7b && raw[i] !== 0x5b) throw typed("entity.parse.failed", 400);
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch {
    throw typed("entity.parse.failed", 400);
  }
}

/**
 * A UTF-16 surrogate without its pair. In a UTF-8 body it can only come from a `\ud800` escape, which JSON.parse
 * keeps; Postgres's UTF-8 has no way to store it, and node-postgres turns it into U+FFFD, so `x\ud800` and
 * `x\udc00` would be stored as one id. (With the u flag a valid pair is one code point, not a surrogate.)
 */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/**
 * Where in a parsed body a string, or a field name, holds an unpaired surrogate: the field's path as the schemas'
 * 400s name it (`metadata.note`, `models.0`; the object's own path for a field name; "" for the body itself), or
 * null when there is none. Iterative, so no body's depth can exhaust the stack.
 */
export function unpairedSurrogateAt(body: unknown): string | null {
  const stack: Array<{ value: unknown; path: string }> = [{ value: body, path: "" }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value === "string") {
      if (UNPAIRED_SURROGATE.test(value)) return path;
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    for (const [name, child] of Object.entries(value)) {
      if (UNPAIRED_SURROGATE.test(name)) return path;
      stack.push({ value: child, path: path === "" ? name : `${path}.${name}` });
    }
  }
  return null;
}

/**
 * The admin API refuses text with an unpaired surrogate anywhere in a body, with a 400 naming the field, before any
 * route reads it: ids, aliases, model names and metadata are all stored, and none may collide with another. Paths
 * and query strings need no such check: they arrive percent-encoded UTF-8, which cannot encode a lone surrogate (the
 * router refuses a path that does not decode; a query string's bad bytes decode to U+FFFD).
 */
export function refuseUnpairedSurrogates(req: { body?: unknown }, _res: unknown, next: (err?: unknown) => void): void {
  const at = unpairedSurrogateAt(req.body);
  if (at === null) {
    next();
    return;
  }
  const message = `${at === "" ? "a field name" : at}: must not contain an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape without its pair): it cannot be stored as text`;
  next(new BadRequestError(message, { code: "unpaired_surrogate", param: at === "" ? null : at }));
}

const READER = Symbol("bodyReader");
interface BodyReader {
  chunks: Buffer[];
  size: number;
  limit: number;
  resolve: (body: Buffer) => void;
  reject: (err: unknown) => void;
  source: Readable;
  done: boolean;
}
type Tagged = { [READER]?: BodyReader };

// Listeners are module functions, not closures made per request: `this` is the stream they listen on.
function onData(this: Tagged, chunk: Buffer): void {
  const reader = this[READER]!;
  if (reader.done) return;
  reader.size += chunk.length;
  if (reader.size > reader.limit) settle(reader, typed("entity.too.large", 413));
  else reader.chunks.push(chunk);
}

function onEnd(this: Tagged): void {
  const reader = this[READER]!;
  if (reader.done) return;
  reader.done = true;
  reader.resolve(reader.chunks.length === 1 ? reader.chunks[0]! : Buffer.concat(reader.chunks, reader.size));
}

function onError(this: Tagged, err: unknown): void {
  const reader = this[READER];
  if (reader) settle(reader, (err as { code?: unknown }).code === "ECONNRESET" ? typed("request.aborted", 400) : err);
}

function onAborted(this: Tagged): void {
  const reader = this[READER];
  if (reader) settle(reader, typed("request.aborted", 400));
}

function settle(reader: BodyReader, err: unknown): void {
  if (reader.done) return;
  reader.done = true;
  reader.chunks.length = 0;
  reader.source.removeListener("data", onData);
  reader.reject(err);
}

function typed(type: string, status: number): Error {
  return Object.assign(new Error(type), { type, status });
}
