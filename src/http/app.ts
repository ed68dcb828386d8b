import type { IncomingMessage, ServerResponse } from "node:http";
import express, { type Express } from "express";
import type { Logger } from "../logger.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { MasterKey } from "../auth/master-key.js";
import type { KeyService } from "../keys/key-service.js";
import type { RotationService } from "../keys/rotation-service.js";
import type { Coherence } from "../coherence/coherence.js";
import type { ModelRegistry } from "../models/model-registry.js";
import type { ModelService } from "../models/model-service.js";
import { modelRoutes } from "./model-routes.js";
import type { SpendTotals } from "../spendlogs/spend-totals.js";
import { spendRoutes } from "./spend-routes.js";
import type { SpendLogReader } from "../spendlogs/spend-log-reader.js";
import type { SpendLogWriter } from "../spendlogs/spend-log-writer.js";
import type { Provider } from "../proxy/provider.js";
import type { ProviderName } from "../config/settings.js";
import type { LimitEnforcer } from "../limits/limit-enforcer.js";
import type { Metrics } from "../metrics/metrics.js";
import { metricsRoutes } from "./metrics-routes.js";
import { buildOpenApiDocument } from "./openapi.js";
import { MasterKey as Token } from "../auth/master-key.js";
import { adminRoutes } from "./admin-routes.js";
import { teamRoutes } from "./team-routes.js";
import { userRoutes } from "./user-routes.js";
import type { UserService } from "../users/user-service.js";
import type { TeamService } from "../teams/team-service.js";
import { CallerAuth, requireMasterKey, requireVirtualKey } from "./auth-middleware.js";
import { errorHandler, notFoundRoute } from "./error-handler.js";
import { healthRoutes, type HealthDeps } from "./health-routes.js";
import { AccessLog, expressAccessLog } from "./access-log.js";
import type { RouterSettings } from "../config/router-settings.js";
import type { DeploymentHealth } from "../proxy/deployment-health.js";
import { ApiRoutes } from "./api-routes.js";
import { modelHealthRoute, routingRoutes } from "./routing-routes.js";
import type { HealthProber } from "../proxy/health-prober.js";
import type { DeploymentLoad } from "../proxy/deployment-load.js";
import type { RoutingStrategy } from "../proxy/routing-strategy.js";
import type { UiSessions } from "../auth/ui-sessions.js";
import type { LoginThrottle } from "../auth/login-throttle.js";
import type { ClientAddress } from "./client-address.js";
import { uiRoutes } from "./ui-routes.js";
import { refuseUnpairedSurrogates } from "./request-body.js";

export interface AppDeps {
  logger: Logger;
  authenticator: Authenticator;
  masterKey: MasterKey;
  keys: KeyService;
  teams: TeamService;
  users: UserService;
  rotation: RotationService;
  coherence: Coherence;
  models: ModelRegistry;
  modelAdmin: ModelService;
  providers: Record<ProviderName, Provider>;
  routing: RouterSettings;
  deploymentHealth: DeploymentHealth;
  deploymentLoad: DeploymentLoad;
  routingStrategy: RoutingStrategy;
  healthProber: HealthProber;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
  health: HealthDeps;
  metrics: Metrics;
  metricsToken: string | undefined;
  /** Every worker's metrics merged, when this process is one of several workers. */
  hostMetrics?: (() => Promise<string>) | undefined;
  maxRequestBodyBytes: number;
  masterKeyOnProxy: "allow" | "forbid";
  /** `server.straight_path` (docs/performance.md, "The straight path"). */
  straightPath: "on" | "off";
  version: string;
  /** Spend logs: the writer (null when spend_logs.logging is off) and the reader behind /spend routes. */
  spendLogs: SpendLogWriter | null;
  spendReader: SpendLogReader;
  spendTotals: SpendTotals;
  replicaId: string;
  /** The admin UI (null when admin_ui.mode is off): its sessions, its login's throttle, and the cluster page's data. */
  adminUi: { sessions: UiSessions; sessionTtlMs: number; cluster: () => Promise<unknown>; loginThrottle: LoginThrottle; clientAddress: ClientAddress } | null;
}

/**
 * The HTTP surface of one replica: a request listener for node:http. The model APIs (OpenAI's and Anthropic's)
 * are served by ApiRoutes at the node:http level; everything else — health, metrics, OpenAPI, the /key admin API
 * (master key) — by the express app. Both share one CallerAuth, one AccessLog and one error mapping.
 */
export interface Http {
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  /** The express app (routes are listed from it by test/openapi.test.ts). */
  app: Express;
}

export function buildHttp(deps: AppDeps): Http {
  const auth = new CallerAuth(deps.authenticator, deps.masterKey, deps.masterKeyOnProxy === "allow", deps.adminUi?.sessions ?? null);
  const accessLog = new AccessLog(deps.logger, deps.metrics);
  const app = buildApp(deps, auth, accessLog);
  const modelApis = new ApiRoutes({
    auth,
    accessLog,
    logger: deps.logger,
    models: deps.models,
    providers: deps.providers,
    routing: deps.routing,
    deploymentHealth: deps.deploymentHealth,
    deploymentLoad: deps.deploymentLoad,
    routingStrategy: deps.routingStrategy,
    limits: deps.limits,
    defaultMaxTokens: deps.defaultMaxTokens,
    maxRequestBodyBytes: deps.maxRequestBodyBytes,
    spendLogs: deps.spendLogs,
    replicaId: deps.replicaId,
    straightPath: deps.straightPath === "on",
    countAttempt: (way) => deps.metrics.relayAttempt(way),
    // Never the upstream's message: it may quote part of the upstream key.
    onUpstreamAuthFailure: (deployment, status) =>
      deps.logger.error(
        { model: deployment.modelName, api_base: deployment.apiBase, upstream_status: status },
        "the upstream provider refused this gateway's credentials; check the model's api_key",
      ),
  });
  return {
    app,
    listener: (req, res) => {
      if (!modelApis.handle(req, res)) app(req, res);
    },
  };
}

/** The admin API: the master key's (or an admin UI session's) routes. */
const ADMIN_PREFIXES = ["/key", "/team", "/user", "/model", "/debug", "/spend", "/global"];

/**
 * No cache between here and the caller (a proxy, the browser's back-forward cache) may keep an admin answer: some
 * hold a plaintext key (/key/generate, /key/regenerate, /key/{key}/regenerate, /user/new, and their Idempotency-Key
 * replays), the rest keys' records and spend. Set for the whole admin API, before anything can answer, so a route
 * added later is covered without anyone remembering it (docs/security.md).
 */
function noStore(_req: IncomingMessage, res: ServerResponse, next: () => void): void {
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Pragma", "no-cache");
  next();
}

function buildApp(deps: AppDeps, auth: CallerAuth, accessLog: AccessLog): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(expressAccessLog(accessLog));
  app.use(healthRoutes(deps.health));
  const openapi = JSON.stringify(buildOpenApiDocument(deps.version));
  app.get("/openapi.json", (_req, res) => {
    res.type("application/json").send(openapi);
  });
  app.use(metricsRoutes(deps.metrics, deps.masterKey, deps.metricsToken ? new Token(deps.metricsToken) : undefined, deps.hostMetrics));
  // Authenticate first, from the headers alone; only then read and parse the body (docs/security.md): an
  // unauthenticated client cannot make a replica buffer or decode megabytes.
  app.use(ADMIN_PREFIXES, noStore, requireMasterKey(auth));
  // The OpenAI routes themselves never reach the express app; any other path under these prefixes still
  // needs a virtual key before it learns that there is no such route.
  app.use(["/v1", "/chat", "/completions", "/embeddings", "/models"], requireVirtualKey(auth));
  app.use(["/key", "/team", "/user", "/model", "/debug"], express.json({ limit: deps.maxRequestBodyBytes }), refuseUnpairedSurrogates);
  app.use(adminRoutes(deps.keys, deps.rotation, deps.coherence));
  app.use(routingRoutes(deps.models, deps.deploymentHealth, deps.deploymentLoad, deps.routingStrategy, deps.healthProber));
  app.get("/health", requireMasterKey(auth), modelHealthRoute(deps.models, deps.healthProber));
  app.use(teamRoutes(deps.teams));
  app.use(userRoutes(deps.users));
  app.use(modelRoutes(deps.modelAdmin));
  app.use(spendRoutes(deps.spendReader, deps.spendTotals));
  if (deps.adminUi) app.use(uiRoutes({ ...deps.adminUi, auth, replicaId: deps.replicaId }));
  app.use(notFoundRoute);
  app.use(errorHandler(deps.logger, deps.maxRequestBodyBytes));
  return app;
}
