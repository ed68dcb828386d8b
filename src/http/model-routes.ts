import { Router } from "express";
import { callerAllowsModel } from "../auth/auth-record.js";
import { parseBody } from "../errors/parse-input.js";
import { deleteModelSchema, newModelSchema, parseModelBody, updateModelSchema } from "../models/model-schemas.js";
import type { ModelService } from "../models/model-service.js";
import { recordOf } from "./access-log.js";
import { changeLog, collectChangeLog } from "./change-log.js";

/**
 * The LiteLLM-compatible /model routes (the master key, applied by the caller), and `GET /v1/model/info`, which a
 * virtual key may call too: it then lists only the models the key may use. No answer ever holds an upstream key.
 */
export function modelRoutes(models: ModelService): Router {
  const router = Router();
  router.use("/model", collectChangeLog);
  router.post("/model/new", async (req, res) => {
    res.json(await models.create(parseModelBody(newModelSchema, req.body), changeLog(res)));
  });
  router.post("/model/update", async (req, res) => {
    res.json(await models.update(parseModelBody(updateModelSchema, req.body), changeLog(res)));
  });
  router.post("/model/delete", async (req, res) => {
    res.json(await models.delete(parseBody(deleteModelSchema, req.body).id, changeLog(res)));
  });
  router.get("/model/info", async (_req, res) => {
    res.json(await models.info());
  });
  router.get("/v1/model/info", async (_req, res) => {
    const auth = recordOf(res).auth!;
    const all = await models.info();
    // The master key's identity has no models of its own: it sees everything, as on /model/info.
    res.json({ data: all.data.filter((m) => callerAllowsModel(auth.record, auth.team, m.model_name, auth.user ?? null)) });
  });
  return router;
}
