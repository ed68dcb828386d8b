import { Router } from "express";
import { litellmModelOf } from "../config/models.js";
import type { ModelRegistry } from "../models/model-registry.js";
import type { DeploymentHealth } from "../proxy/deployment-health.js";

/**
 * `GET /debug/routing` (master key): every deployment this replica serves, and whether it is cooling down as the
 * cluster's shared routing state says (docs/routing.md) — the same on every replica while Redis answers
 * (`shared`); this replica's own view when it does not.
 */
export function routingRoutes(models: ModelRegistry, health: DeploymentHealth): Router {
  const router = Router();
  router.get("/debug/routing", (_req, res) => {
    const cooling = new Map(health.snapshot().map((c) => [c.id, c.msLeft]));
    res.json({
      shared: health.shared,
      deployments: models.deployments().map((d) => ({
        id: d.id,
        model: d.modelName,
        deployment: litellmModelOf(d),
        weight: d.weight,
        order: d.order,
        cooling_ms: cooling.get(d.id) ?? 0,
      })),
      counters: health.counters,
    });
  });
  return router;
}
