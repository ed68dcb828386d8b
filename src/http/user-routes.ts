import { Router } from "express";
import { parseBody, parseInput } from "../errors/parse-input.js";
import { deleteUsersSchema, listUsersQuerySchema, newUserSchema, updateUserSchema, userInfoQuerySchema } from "../users/user-schemas.js";
import type { UserService } from "../users/user-service.js";
import { changeLog, collectChangeLog } from "./change-log.js";

/** The LiteLLM-compatible /user routes. Authorization (master key) is applied by the caller. */
export function userRoutes(users: UserService): Router {
  const router = Router();
  router.use("/user", collectChangeLog);
  router.post("/user/new", async (req, res) => {
    res.json(await users.create(parseBody(newUserSchema, req.body), changeLog(res)));
  });
  router.post("/user/update", async (req, res) => {
    res.json(await users.update(parseBody(updateUserSchema, req.body), changeLog(res)));
  });
  router.post("/user/delete", async (req, res) => {
    res.json(await users.delete(parseBody(deleteUsersSchema, req.body).user_ids, changeLog(res)));
  });
  router.get("/user/info", async (req, res) => {
    res.json(await users.info(parseInput(userInfoQuerySchema, req.query).user_id));
  });
  router.get("/user/list", async (req, res) => {
    res.json(await users.list(parseInput(listUsersQuerySchema, req.query)));
  });
  return router;
}
