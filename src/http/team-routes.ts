import { Router } from "express";
import { parseBody, parseInput } from "../errors/parse-input.js";
import type { TeamService } from "../teams/team-service.js";
import {
  deleteTeamsSchema,
  listTeamsQuerySchema,
  memberAddSchema,
  memberDeleteSchema,
  memberUpdateSchema,
  newTeamSchema,
  teamInfoQuerySchema,
  teamRefSchema,
  updateTeamSchema,
} from "../teams/team-schemas.js";
import { changeLog, collectChangeLog } from "./change-log.js";

/** The LiteLLM-compatible /team routes. Authorization (master key) is applied by the caller. */
export function teamRoutes(teams: TeamService): Router {
  const router = Router();
  router.use("/team", collectChangeLog);
  router.post("/team/new", async (req, res) => {
    res.json(await teams.create(parseBody(newTeamSchema, req.body), changeLog(res)));
  });
  router.post("/team/update", async (req, res) => {
    res.json(await teams.update(parseBody(updateTeamSchema, req.body), changeLog(res)));
  });
  router.post("/team/delete", async (req, res) => {
    res.json(await teams.delete(parseBody(deleteTeamsSchema, req.body).team_ids, changeLog(res)));
  });
  router.post("/team/block", async (req, res) => {
    res.json(await teams.setBlocked(parseBody(teamRefSchema, req.body).team_id, true, changeLog(res)));
  });
  router.post("/team/unblock", async (req, res) => {
    res.json(await teams.setBlocked(parseBody(teamRefSchema, req.body).team_id, false, changeLog(res)));
  });
  router.post("/team/member_add", async (req, res) => {
    const body = parseBody(memberAddSchema, req.body);
    const members = (Array.isArray(body.member) ? body.member : [body.member]).map((m) =>
      m.max_budget_in_team === undefined && body.max_budget_in_team !== undefined ? { ...m, max_budget_in_team: body.max_budget_in_team } : m,
    );
    res.json(await teams.addMembers(body.team_id, members, changeLog(res)));
  });
  router.post("/team/member_update", async (req, res) => {
    res.json(await teams.updateMember(parseBody(memberUpdateSchema, req.body), changeLog(res)));
  });
  router.post("/team/member_delete", async (req, res) => {
    const body = parseBody(memberDeleteSchema, req.body);
    res.json(await teams.deleteMember(body.team_id, body, changeLog(res)));
  });
  router.get("/team/info", async (req, res) => {
    res.json(await teams.info(parseInput(teamInfoQuerySchema, req.query).team_id));
  });
  router.get("/team/list", async (req, res) => {
    res.json(await teams.list(parseInput(listTeamsQuerySchema, req.query)));
  });
  return router;
}
