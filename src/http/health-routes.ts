import { Router } from "express";

export interface ReadinessProbe {
  name: string;
  check(): Promise<void>;
}

/** LiteLLM's health paths. Liveliness: the process answers. Readiness: its dependencies answer too. */
export function healthRoutes(probes: ReadinessProbe[], isShuttingDown: () => boolean): Router {
  const router = Router();
  router.get("/health/liveliness", (_req, res) => {
    res.json("I'm alive!");
  });
  router.get("/health/readiness", async (_req, res) => {
    const results = await Promise.all(
      probes.map(async (p) => {
        try {
          await withTimeout(p.check(), 1_000);
          return [p.name, "connected"] as const;
        } catch (err) {
          return [p.name, `unreachable: ${(err as Error).message}`] as const;
        }
      }),
    );
    const healthy = !isShuttingDown() && results.every(([, state]) => state === "connected");
    res.status(healthy ? 200 : 503).json({ status: healthy ? "healthy" : isShuttingDown() ? "shutting_down" : "unhealthy", ...Object.fromEntries(results) });
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
