import type { ServerResponse } from "node:http";
import { BadRequestError, GatewayError, InternalError, LibraryRefusalError, PayloadTooLargeError, type OpenAIErrorBody } from "../errors/errors.js";

/**
 * Every error a request can end in, mapped to what the client is told, in one place for the express app and the
 * OpenAI routes alike. Returns undefined for an error that is ours (a bug): the caller logs it and answers 500.
 */
export function classifyError(err: unknown, maxBodyBytes: number): GatewayError | undefined {
  if (err instanceof GatewayError) return err;
  // Body-reading errors carry a `type` (body-parser's names, which the OpenAI routes' reader uses too); none of
  // them is the server's fault.
  const type = (err as { type?: string }).type;
  if (type === "entity.too.large") return new PayloadTooLargeError(maxBodyBytes);
  if (type === "entity.parse.failed") return new BadRequestError("request body is not valid JSON", { code: "invalid_json" });
  if (type === "encoding.unsupported" || type === "charset.unsupported") return new BadRequestError("unsupported request body encoding", { code: "unsupported_encoding" });
  if (type === "request.aborted") return new BadRequestError("request aborted by the client", { code: "request_aborted" });
  // A body whose Content-Encoding does not decode (zlib's errors) is the client's.
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("Z_")) return new BadRequestError("request body does not decode with its Content-Encoding", { code: "invalid_encoding" });
  // A path segment with bad percent-encoding (the router's decodeURIComponent). Its text may hold a key, so the
  // message is ours, not the library's, and nothing of it is logged.
  if (err instanceof URIError) return new BadRequestError("the request path is not validly percent-encoded", { code: "invalid_path" });
  // Postgres refused a value (class 22: a NUL character, an interval out of range): input the schemas let
  // through. The transaction rolled back, so nothing was written.
  if (typeof code === "string" && /^22[0-9A-Z]{3}$/.test(code) && (err as { severity?: unknown }).severity !== undefined) {
    return new BadRequestError("a value in the request cannot be stored (out of range or not valid text)", { code: "invalid_value" });
  }
  // Any other library error that already says "4xx" is honoured, with a message of ours.
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) return new LibraryRefusalError(status);
  return undefined;
}

/** The client went away before the answer (an upstream call aborted on its behalf): normal traffic, not an error. */
export function isClientAbort(err: unknown): boolean {
  const name = (err as { name?: unknown }).name;
  const code = (err as { code?: unknown }).code;
  return name === "AbortError" || code === "UND_ERR_ABORTED" || code === "ABORT_ERR";
}

/** Only the message and stack: pg and ioredis errors can carry connection strings and query values. */
export function serializeError(err: unknown) {
  if (err instanceof Error) return { name: err.name, message: err.message, code: (err as { code?: string }).code, stack: err.stack };
  return { message: String(err) };
}

/** Writes an OpenAI-shaped error answer on a response whose headers are not sent yet. */
export function writeError(res: ServerResponse, error: GatewayError | undefined): void {
  const told = error ?? new InternalError();
  for (const name in told.headers) res.setHeader(name, told.headers[name]!);
  writeJson(res, told.status, told.toBody());
}

export function writeJson(res: ServerResponse, status: number, body: OpenAIErrorBody | object): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", Buffer.byteLength(text));
  res.end(text);
}
