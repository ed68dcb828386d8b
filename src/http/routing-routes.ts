import { Router } from "express";
import { litellmModelOf } from "../config/models.js";
import type { ModelRegistry } from "../models/model-registry.js";
import type { DeploymentHealth } from "../proxy/deployment-health.js";
import type { DeploymentLoad } from "../proxy/deployment-load.js";
import type { RoutingStrategy } from "../proxy/routing-strategy.js";
import type { HealthProber, HealthResult } from "../proxy/health-prober.js";
import type { ModelDeployment } from "../config/settings.js";
import { NotFoundError } from "../errors/errors.js";
import type { RequestHandler } from "express";

/**
 * `GET /debug/routing` (master key): every deployment this replica serves, whether it is cooling down as the
 * cluster's shared routing state says (docs/routing.md), its limits, its load (calls in flight and tokens this
 * minute across the cluster) and its latency — the same on every replica while Redis answers (`shared`); this
 * replica's own view when it does not.
 */
export function routingRoutes(models: ModelRegistry, health: DeploymentHealth, load: DeploymentLoad, strategy: RoutingStrategy, prober: HealthProber): Router {
  const router = Router();
  router.get("/debug/routing", async (_req, res) => {
    const cooling = new Map(health.snapshot().map((c) => [c.id, c.msLeft]));
    const deployments = models.deployments();
    const loads = await load.loads(deployments);
    const here = load.inFlightOnThisReplica();
    const checks = await prober.results();
    res.json({
      strategy: strategy.name,
      shared: health.shared && load.shared,
      // Requests for a database model waiting while the database models are read again (after a model change).
      waiting_for_model_read: models.waitingForRead,
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
        health: checks.get(d.id) ?? null,
      })),
      counters: { ...health.counters, ...load.counters },
    });
  });
  return router;
}

/**
 * `GET /health` (master key), LiteLLM's shape: every deployment (or `?model=`'s) healthy or not. With background
 * checks on, the last results the cluster shares (one replica checks per interval, proxy/health-prober.ts); a
 * deployment not checked yet, or whose checks are disabled, is listed under `unchecked_endpoints`. Without them,
 * this replica checks every deployment now, as LiteLLM does — each call costs one small upstream call per deployment.
 */
export function modelHealthRoute(models: ModelRegistry, prober: HealthProber): RequestHandler {
  return async (req, res) => {
    const asked = typeof req.query.model === "string" ? req.query.model : undefined;
    const all = models.deployments();
    const deployments = asked === undefined ? all : all.filter((d) => d.modelName === asked);
    if (asked !== undefined && deployments.length === 0)
      throw new NotFoundError(`The model '${asked}' does not exist on this gateway.`, { code: "model_not_found", param: "model" });
    const results = prober.background ? await prober.results() : await prober.checkNow(deployments);
    const healthy: object[] = [];
    const unhealthy: object[] = [];
    const unchecked: object[] = [];
    for (const d of deployments) {
      const r = results.get(d.id);
      if (!r) unchecked.push(endpoint(d));
      else if (r.healthy) healthy.push(endpoint(d, r));
      else unhealthy.push({ ...endpoint(d, r), error: r.error });
    }
    res.json({
      healthy_endpoints: healthy,
      unhealthy_endpoints: unhealthy,
      healthy_count: healthy.length,
      unhealthy_count: unhealthy.length,
      unchecked_endpoints: unchecked,
      background_health_checks: prober.background,
      health_check_interval: prober.intervalMs / 1000,
    });
  };
}

/** A deployment as /health lists it: LiteLLM's `model` and `api_base` (never a key), and when and by whom it was checked. */
function endpoint(d: ModelDeployment, r?: HealthResult): object {
  return {
    model: litellmModelOf(d),
    model_name: d.modelName,
    model_id: d.id,
    api_base: d.apiBase ?? null,
    ...(r && { checked_at: new Date(r.checkedAt).toISOString(), latency_ms: r.latencyMs, checked_by: r.by }),
  };
}
