import type { NextFunction, Request, Response } from "express";
import type { Logger } from "../logger.js";
import { loggablePath } from "./request-context.js";
import { BadRequestError, GatewayError, internalErrorBody, NotFoundError, PayloadTooLargeError } from "./errors.js";

/** Maps every error to an OpenAI-shaped body in one place. Unexpected errors are logged and become 500. */
export function errorHandler(logger: Logger, maxBodyBytes: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
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
  return undefined;
}

/** Only the message and stack: pg and ioredis errors can carry connection strings and query values. */
function serializeError(err: unknown) {
  if (err instanceof Error) return { name: err.name, message: err.message, code: (err as { code?: string }).code, stack: err.stack };
  return { message: String(err) };
}
