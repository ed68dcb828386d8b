import { Router } from "express";
import type { MasterKey } from "../auth/master-key.js";
import type { Metrics } from "../metrics/metrics.js";
import { AuthenticationError } from "../errors/errors.js";
import { bearerToken } from "./bearer.js";

/**
 * GET /metrics in Prometheus text. A scraper authenticates with the master key or, better, with the
 * separate metrics token (`metrics.token`, GATEHOUSE_METRICS_TOKEN), which can read metrics and nothing else.
 */
export function metricsRoutes(metrics: Metrics, masterKey: MasterKey, metricsToken: MasterKey | undefined): Router {
  const router = Router();
  router.get("/metrics", async (req, res) => {
    const bearer = bearerToken(req.headers);
    if (!masterKey.matches(bearer) && !metricsToken?.matches(bearer)) {
      throw new AuthenticationError("/metrics needs the metrics token or the master key: 'Authorization: Bearer <token>'.", "invalid_metrics_token");
    }
    res.setHeader("content-type", metrics.contentType);
    res.send(await metrics.render());
  });
  return router;
}
