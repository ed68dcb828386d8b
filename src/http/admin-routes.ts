import { Router } from "express";
import type { KeyService } from "../keys/key-service.js";
import {
  deleteKeysSchema,
  generateKeySchema,
  keyRefSchema,
  listKeysQuerySchema,
  parseBody,
  parseInput,
  updateKeySchema,
} from "../keys/key-schemas.js";
import { BadRequestError } from "./errors.js";

/** The LiteLLM-compatible /key routes. Authorization (master key) is applied by the caller. */
export function adminRoutes(keys: KeyService): Router {
  const router = Router();

  router.post("/key/generate", async (req, res) => {
    res.json(await keys.generate(parseBody(generateKeySchema, req.body)));
  });

  router.post("/key/update", async (req, res) => {
    res.json(await keys.update(parseBody(updateKeySchema, req.body)));
  });

  router.get("/key/info", async (req, res) => {
    const key = req.query.key;
    if (typeof key !== "string" || key.length === 0) throw new BadRequestError("query parameter 'key' is required", "key");
    res.json(await keys.info(key));
  });

  router.get("/key/list", async (req, res) => {
    res.json(await keys.list(parseInput(listKeysQuerySchema, req.query)));
  });

  router.post("/key/delete", async (req, res) => {
    res.json(await keys.delete(parseBody(deleteKeysSchema, req.body)));
  });

  router.post("/key/block", async (req, res) => {
    res.json(await keys.setBlocked(parseBody(keyRefSchema, req.body).key, true));
  });

  router.post("/key/unblock", async (req, res) => {
    res.json(await keys.setBlocked(parseBody(keyRefSchema, req.body).key, false));
  });

  return router;
}
