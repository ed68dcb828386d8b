import type { NextFunction, Request, Response } from "express";
import type { Logger } from "../logger.js";
import { NotFoundError } from "../errors/errors.js";
import { classifyError, isClientAbort, serializeError, writeError } from "./error-mapping.js";
import { loggablePath } from "./loggable-path.js";

/** The express app's error handler: every error becomes an OpenAI-shaped body (error-mapping.ts); bugs become 500. */
export function errorHandler(logger: Logger, maxBodyBytes: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    // Nobody is left to answer a client that went away.
    if (isClientAbort(err) && (req.destroyed || res.destroyed || res.writableEnded)) {
      logger.debug({ path: loggablePath(req.path) }, "client went away before the answer");
      res.destroy();
      return;
    }
    const error = classifyError(err, maxBodyBytes);
    if (!error) logger.error({ err: serializeError(err), path: loggablePath(req.path) }, "unhandled error");
    if (res.headersSent) {
      res.destroy();
      return;
    }
    writeError(res, error);
  };
}

export function notFoundRoute(req: Request): never {
  throw new NotFoundError(`no route for ${req.method} ${req.path}`, { code: "route_not_found" });
}
