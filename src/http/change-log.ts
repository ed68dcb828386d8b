import type { NextFunction, Request, Response } from "express";
import type { ChangeLog } from "../coherence/change-commit.js";

/**
 * Every admin write names the events it committed (`Gatehouse-Event-Id`, comma-separated, in commit order): a
 * client, the history checker or an operator can tell exactly where a change sits among everyone else's.
 * The routes pass `changeLog(res)` to the services, which note each event as it commits.
 */
export function collectChangeLog(_req: Request, res: Response, next: NextFunction): void {
  const log: ChangeLog = { eventIds: [] };
  res.locals.changeLog = log;
  const json = res.json.bind(res);
  res.json = (body: unknown) => {
    if (log.eventIds.length > 0 && !res.headersSent) res.setHeader("Gatehouse-Event-Id", log.eventIds.join(","));
    return json(body);
  };
  next();
}

/** The events this request's changes committed (set up by collectChangeLog). */
export function changeLog(res: Response): ChangeLog {
  return res.locals.changeLog as ChangeLog;
}
