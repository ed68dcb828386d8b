import { Router } from "express";
import type { MasterKey } from "../auth/master-key.js";
import type { Metrics } from "../metrics/metrics.js";
import { AuthenticationError } from "../errors/errors.js";
import { bearerToken } from "./bearer.js";

/**
 * GET /metrics in Prometheus text. A scraper authenticates with the master key or, better, with the
 * separate metrics token (`metrics.token`, GATEHOUSE_METRICS_TOKEN), which can read metrics and nothing else.
 * Under `--workers`, the answer covers every worker of the host (`?scope=worker`: only the one that answered).
 */
export function metricsRoutes(metrics: Metrics, masterKey: MasterKey, metricsToken: MasterKey | undefined, hostMetrics?: () => Promise<string>): Router {
  const router = Router();
  router.get("/metrics", async (req, res) => {
    const bearer = bearerToken(req.headers);
    if (!masterKey.matches(bearer) && !metricsToken?.matches(bearer)) {
      throw new AuthenticationError("/metrics needs the metrics token or the master key: 'Authorization: Bearer <token>'.", { code: "invalid_metrics_token" });
    }
    res.setHeader("content-type", metrics.contentType);
    // Under --workers, a scrape sees the whole host (every worker's series merged: counters and histograms
    // summed); `?scope=worker` shows the worker that answered.
    res.send(hostMetrics && req.query.scope !== "worker" ? await hostMetrics() : await metrics.render());
  });
  return router;
}
