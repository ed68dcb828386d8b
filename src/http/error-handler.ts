import type { NextFunction, Request, Response } from "express";
import type { Logger } from "../logger.js";
import { loggablePath } from "./request-context.js";
import { BadRequestError, GatewayError, internalErrorBody, NotFoundError, PayloadTooLargeError } from "../errors/errors.js";

/** Maps every error to an OpenAI-shaped body in one place. Unexpected errors are logged and become 500. */
export function errorHandler(logger: Logger, maxBodyBytes: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    // The client went away before the answer (an upstream call aborted on its behalf): normal traffic, not an
    // error of ours. Nobody is left to answer.
    if (isAbort(err) && (req.destroyed || res.destroyed || res.writableEnded)) {
      logger.debug({ path: loggablePath(req) }, "client went away before the answer");
      res.destroy();
      return;
    }
    const error = classify(err, maxBodyBytes);
    if (!error) {
      logger.error({ err: serializeError(err), path: loggablePath(req) }, "unhandled error");
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error) {
      for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
      res.status(error.status).json(error.toBody());
    } else {
      res.status(500).json(internalErrorBody());
    }
  };
}

export function notFoundRoute(req: Request): never {
  throw new NotFoundError(`no route for ${req.method} ${req.path}`, null, "route_not_found");
}

function classify(err: unknown, maxBodyBytes: number): GatewayError | undefined {
  if (err instanceof GatewayError) return err;
  // body-parser's errors carry a `type`; none of them is the server's fault.
  const type = (err as { type?: string }).type;
  if (type === "entity.too.large") return new PayloadTooLargeError(maxBodyBytes);
  if (type === "entity.parse.failed") return new BadRequestError("request body is not valid JSON", null, "invalid_json");
  if (type === "encoding.unsupported" || type === "charset.unsupported") return new BadRequestError("unsupported request body encoding", null, "unsupported_encoding");
  if (type === "request.aborted") return new BadRequestError("request aborted by the client", null, "request_aborted");
  // A body whose Content-Encoding does not decode (zlib's errors) is the client's.
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("Z_")) return new BadRequestError("request body does not decode with its Content-Encoding", null, "invalid_encoding");
  // A path segment with bad percent-encoding (the router's decodeURIComponent). Its text may hold a key, so the
  // message is ours, not the library's, and nothing of it is logged.
  if (err instanceof URIError) return new BadRequestError("the request path is not validly percent-encoded", null, "invalid_path");
  // Postgres refused a value (class 22: a NUL character, an interval out of range): input the schemas let
  // through. The transaction rolled back, so nothing was written.
  if (typeof code === "string" && /^22[0-9A-Z]{3}$/.test(code) && (err as { severity?: unknown }).severity !== undefined) {
    return new BadRequestError("a value in the request cannot be stored (out of range or not valid text)", null, "invalid_value");
  }
  // Any other library error that already says "4xx" is honoured, with a message of ours.
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) return new GatewayError(status, "invalid_request_error", "invalid_request", "the request is not valid");
  return undefined;
}

/** Only the message and stack: pg and ioredis errors can carry connection strings and query values. */
function serializeError(err: unknown) {
  if (err instanceof Error) return { name: err.name, message: err.message, code: (err as { code?: string }).code, stack: err.stack };
  return { message: String(err) };
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: unknown }).name;
  const code = (err as { code?: unknown }).code;
  return name === "AbortError" || code === "UND_ERR_ABORTED" || code === "ABORT_ERR";
}
