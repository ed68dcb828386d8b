import { Router } from "express";
import { parseInput } from "../keys/key-schemas.js";
import { spendLogsQuerySchema, spendReportQuerySchema, type SpendLogReader } from "../spendlogs/spend-log-reader.js";

/** The LiteLLM-compatible spend routes (docs/spend-logs.md). Authorization (master key) is applied by the caller. */
export function spendRoutes(reader: SpendLogReader): Router {
  const router = Router();
  router.get("/spend/logs", async (req, res) => {
    res.json(await reader.logs(parseInput(spendLogsQuerySchema, req.query)));
  });
  router.get("/global/spend/report", async (req, res) => {
    res.json(await reader.report(parseInput(spendReportQuerySchema, req.query)));
  });
  return router;
}
