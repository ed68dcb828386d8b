import { Router } from "express";

export interface ReadinessProbe {
  name: string;
  check(): Promise<void>;
}

export interface HealthDeps {
  probes: ReadinessProbe[];
  isShuttingDown: () => boolean;
  /** Breaker states, listener state and freshness: the detail an operator wants next to the verdict. */
  detail: () => Record<string, unknown>;
}

/**
 * LiteLLM's health paths. Liveliness: the process answers. Readiness: 200 "healthy", 200 "degraded" when
 * Postgres or Redis is unreachable, 503 only while shutting down.
 *
 * Why "degraded" is still 200: every replica shares the same Postgres and Redis, so a dependency outage
 * would fail every replica's check at once and the load balancer would take the whole fleet out, turning
 * "new keys cannot be checked" into "nothing works". A degraded replica still serves every cached key
 * (fail static, docs/coherence.md #7) and answers 503 itself where it cannot know. Alert on "degraded".
 */
export function healthRoutes(deps: HealthDeps): Router {
  const router = Router();
  router.get("/health/liveliness", (_req, res) => {
    res.json("I'm alive!");
  });
  router.get("/health/readiness", async (_req, res) => {
    if (deps.isShuttingDown()) {
      res.status(503).json({ status: "shutting_down", ...deps.detail() });
      return;
    }
    const results = await Promise.all(
      deps.probes.map(async (p) => {
        try {
          await withTimeout(p.check(), 1_000);
          return [p.name, "connected"] as const;
        } catch (err) {
          return [p.name, `unreachable: ${(err as Error).message}`] as const;
        }
      }),
    );
    const healthy = results.every(([, state]) => state === "connected");
    res.status(200).json({ status: healthy ? "healthy" : "degraded", ...Object.fromEntries(results), ...deps.detail() });
  });
  return router;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    }),
  ]);
}
