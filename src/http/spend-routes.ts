import { Router } from "express";
import { z } from "zod";
import { parseInput } from "../errors/parse-input.js";
import { spendLogsQuerySchema, spendReportQuerySchema, type SpendLogReader } from "../spendlogs/spend-log-reader.js";
import { spendKeysQuerySchema, type SpendTotals, spendUsersQuerySchema } from "../spendlogs/spend-totals.js";

/** The LiteLLM-compatible spend routes (docs/spend-logs.md). Authorization (master key) is applied by the caller. */
export function spendRoutes(reader: SpendLogReader, totals: SpendTotals): Router {
  const router = Router();
  router.get("/spend/logs", async (req, res) => {
    res.json(await reader.logs(parseInput(spendLogsQuerySchema, req.query)));
  });
  router.get("/global/spend/report", async (req, res) => {
    res.json(await reader.report(parseInput(spendReportQuerySchema, req.query)));
  });
  router.get("/global/spend/keys", async (req, res) => {
    res.json(await totals.topKeys(parseInput(spendKeysQuerySchema, req.query)));
  });
  router.get("/global/spend/teams", async (req, res) => {
    parseInput(z.strictObject({}), req.query);
    res.json(await totals.teams());
  });
  router.get("/spend/keys", async (req, res) => {
    res.json(await totals.keys(parseInput(spendKeysQuerySchema, req.query)));
  });
  router.get("/spend/users", async (req, res) => {
    res.json(await totals.users(parseInput(spendUsersQuerySchema, req.query)));
  });
  return router;
}
