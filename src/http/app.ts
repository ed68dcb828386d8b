import express, { type Express } from "express";
import type { Logger } from "../logger.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { MasterKey } from "../auth/master-key.js";
import type { KeyService } from "../keys/key-service.js";
import type { RotationService } from "../keys/rotation-service.js";
import type { Coherence } from "../coherence/coherence.js";
import type { ModelRouter } from "../proxy/model-router.js";
import type { Provider } from "../proxy/provider.js";
import type { ProviderName } from "../config/settings.js";
import type { LimitEnforcer } from "../limits/limit-enforcer.js";
import type { Metrics } from "../metrics/metrics.js";
import { metricsRoutes } from "./metrics-routes.js";
import { buildOpenApiDocument } from "./openapi.js";
import { MasterKey as Token } from "../auth/master-key.js";
import { adminRoutes } from "./admin-routes.js";
import { requireMasterKey, requireVirtualKey } from "./auth-middleware.js";
import { errorHandler, notFoundRoute } from "./error-handler.js";
import { healthRoutes, type HealthDeps } from "./health-routes.js";
import { proxyRoutes } from "./proxy-routes.js";
import { keepRawBody, requestLog } from "./request-context.js";

export interface AppDeps {
  logger: Logger;
  authenticator: Authenticator;
  masterKey: MasterKey;
  keys: KeyService;
  rotation: RotationService;
  coherence: Coherence;
  models: ModelRouter;
  providers: Record<ProviderName, Provider>;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
  health: HealthDeps;
  metrics: Metrics;
  metricsToken: string | undefined;
  maxRequestBodyBytes: number;
  masterKeyOnProxy: "allow" | "forbid";
  version: string;
}

/** The HTTP surface: health, the /key admin API (master key), and the OpenAI routes (virtual keys). */
export function buildApp(deps: AppDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(requestLog(deps.logger, (route, model, status, seconds, upstream) => deps.metrics.request(route, model, status, seconds, upstream)));
  app.use(healthRoutes(deps.health));
  const openapi = JSON.stringify(buildOpenApiDocument(deps.version));
  app.get("/openapi.json", (_req, res) => {
    res.type("application/json").send(openapi);
  });
  app.use(metricsRoutes(deps.metrics, deps.masterKey, deps.metricsToken ? new Token(deps.metricsToken) : undefined));
  // Authenticate first, from the headers alone; only then read and parse the body (docs/security.md): an
  // unauthenticated client cannot make a replica buffer or decode megabytes.
  const adminPrefixes = ["/key", "/debug"];
  const proxyPrefixes = ["/v1", "/chat", "/completions", "/embeddings", "/models"];
  app.use(adminPrefixes, requireMasterKey(deps.masterKey, deps.authenticator));
  app.use(proxyPrefixes, requireVirtualKey(deps.authenticator, deps.masterKey, deps.masterKeyOnProxy === "allow"));
  // The raw bytes are kept so the proxy can forward a body it did not need to change without re-serialising it.
  app.use([...adminPrefixes, ...proxyPrefixes], express.json({ limit: deps.maxRequestBodyBytes, verify: keepRawBody }));
  app.use(adminRoutes(deps.keys, deps.rotation, deps.coherence));
  app.use(
    proxyRoutes({
      models: deps.models,
      providers: deps.providers,
      limits: deps.limits,
      defaultMaxTokens: deps.defaultMaxTokens,
      // Never the upstream's message: it may quote part of the upstream key.
      onUpstreamAuthFailure: (deployment, status) =>
        deps.logger.error({ model: deployment.modelName, api_base: deployment.apiBase, upstream_status: status }, "the upstream provider refused this gateway's credentials; check the model's api_key"),
    }),
  );
  app.use(notFoundRoute);
  app.use(errorHandler(deps.logger, deps.maxRequestBodyBytes));
  return app;
}
