import { Router } from "express";
import { litellmModelOf } from "../config/models.js";
import type { ModelRegistry } from "../models/model-registry.js";
import type { DeploymentHealth } from "../proxy/deployment-health.js";
import type { DeploymentLoad } from "../proxy/deployment-load.js";
import type { RoutingStrategy } from "../proxy/routing-strategy.js";

/**
 * `GET /debug/routing` (master key): every deployment this replica serves, whether it is cooling down as the
 * cluster's shared routing state says (docs/routing.md), its limits, its load (calls in flight and tokens this
 * minute across the cluster) and its latency — the same on every replica while Redis answers (`shared`); this
 * replica's own view when it does not.
 */
export function routingRoutes(models: ModelRegistry, health: DeploymentHealth, load: DeploymentLoad, strategy: RoutingStrategy): Router {
  const router = Router();
  router.get("/debug/routing", async (_req, res) => {
    const cooling = new Map(health.snapshot().map((c) => [c.id, c.msLeft]));
    const deployments = models.deployments();
    const loads = await load.loads(deployments);
    const here = load.inFlightOnThisReplica();
    res.json({
      strategy: strategy.name,
      shared: health.shared && load.shared,
      deployments: deployments.map((d, i) => ({
        id: d.id,
        model: d.modelName,
        deployment: litellmModelOf(d),
        weight: d.weight,
        order: d.order,
        rpm: d.rpm ?? null,
        tpm: d.tpm ?? null,
        max_parallel_requests: d.maxParallelRequests ?? null,
        cooling_ms: cooling.get(d.id) ?? 0,
        in_flight: loads[i]!.inFlight,
        in_flight_here: here.get(d.id) ?? 0,
        tokens_this_minute: loads[i]!.tokens,
        latency_ms: load.latencyMs(d.id) ?? null,
      })),
      counters: { ...health.counters, ...load.counters },
    });
  });
  return router;
}
