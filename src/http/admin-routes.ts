import { Router, type Request } from "express";
import type { Coherence } from "../coherence/coherence.js";
import type { KeyService } from "../keys/key-service.js";
import type { RotationService } from "../keys/rotation-service.js";
import { deleteKeysSchema, generateKeySchema, keyRefSchema, listKeysQuerySchema, regenerateKeySchema, resetSpendSchema, updateKeySchema } from "../keys/key-schemas.js";
import { changeLog, collectChangeLog } from "./change-log.js";
import { BadRequestError } from "../errors/errors.js";
import { parseBody, parseInput } from "../errors/parse-input.js";

/** The LiteLLM-compatible /key routes. Authorization (master key) is applied by the caller. */
export function adminRoutes(keys: KeyService, rotation: RotationService, coherence: Coherence): Router {
  const router = Router();
  router.use("/key", collectChangeLog);

  router.post("/key/generate", async (req, res) => {
    const idempotencyKey = idempotencyKeyOf(req);
    res.json(await keys.generate(parseBody(generateKeySchema, req.body), idempotencyKey, changeLog(res)));
  });

  router.post("/key/regenerate", async (req, res) => {
    const idempotencyKey = idempotencyKeyOf(req);
    const body = parseBody(regenerateKeySchema, req.body);
    if (!body.key) throw new BadRequestError("'key' is required: the key to regenerate, as plaintext or hash", { param: "key" });
    res.json(await rotation.regenerate(body.key, body, idempotencyKey, changeLog(res)));
  });

  router.post("/key/:key/regenerate", async (req, res) => {
    const idempotencyKey = idempotencyKeyOf(req);
    // An empty body is allowed here: the key is in the path, and every field is optional.
    const body = parseBody(regenerateKeySchema, req.body ?? {});
    res.json(await rotation.regenerate(req.params.key, body, idempotencyKey, changeLog(res)));
  });

  router.post("/key/:key/reset_spend", async (req, res) => {
    const body = parseBody(resetSpendSchema, req.body ?? {});
    res.json(await keys.resetSpend(req.params.key, body.reset_to));
  });

  // A leaked old token: stop every token of the key that is still in its grace, now, on every replica.
  router.post("/key/end_grace", async (req, res) => {
    res.json(await keys.endGrace(parseBody(keyRefSchema, req.body).key, changeLog(res)));
  });

  router.post("/key/:key/end_grace", async (req, res) => {
    res.json(await keys.endGrace(req.params.key, changeLog(res)));
  });

  router.post("/key/update", async (req, res) => {
    res.json(await keys.update(parseBody(updateKeySchema, req.body), changeLog(res)));
  });

  router.get("/key/info", async (req, res) => {
    const key = req.query.key;
    if (typeof key !== "string" || key.length === 0) throw new BadRequestError("query parameter 'key' is required", { param: "key" });
    res.json(await keys.info(key));
  });

  router.get("/key/list", async (req, res) => {
    res.json(await keys.list(parseInput(listKeysQuerySchema, req.query)));
  });

  router.post("/key/delete", async (req, res) => {
    res.json(await keys.delete(parseBody(deleteKeysSchema, req.body), changeLog(res)));
  });

  router.post("/key/block", async (req, res) => {
    res.json(await keys.setBlocked(parseBody(keyRefSchema, req.body).key, true, changeLog(res)));
  });

  router.post("/key/unblock", async (req, res) => {
    res.json(await keys.setBlocked(parseBody(keyRefSchema, req.body).key, false, changeLog(res)));
  });

  // Operators and the benchmarks read this replica's coherence state and recent propagation lags.
  router.get("/debug/coherence", (req, res) => {
    const after = Number(req.query.after_event_id ?? Number.NaN);
    res.json({ ...coherence.status(), applied: Number.isFinite(after) ? coherence.appliedSince(after) : undefined });
  });

  return router;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The request's `Idempotency-Key` header (1 to 255 visible ASCII characters), or undefined when absent. */
function idempotencyKeyOf(req: Request): string | undefined {
  const value = req.headers["idempotency-key"];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
    throw new BadRequestError("Idempotency-Key must be 1 to 255 visible ASCII characters", { code: "invalid_idempotency_key", param: "Idempotency-Key" });
  }
  return value;
}
