import { once } from "node:events";
import { Router, type Request, type Response } from "express";
import { keyAllowsModel } from "../auth/auth-record.js";
import type { ModelRouter } from "../proxy/model-router.js";
import type { Endpoint, Provider, UpstreamResponse } from "../proxy/provider.js";
import type { ModelDeployment, ProviderName } from "../config/settings.js";
import type { AuthRecord } from "../auth/auth-record.js";
import type { LimitEnforcer, Lease } from "../limits/limit-enforcer.js";
import { priceOf, worstCaseCharge } from "../limits/pricing.js";
import { jsonUsageMeter, sseUsageMeter, type UsageMeter } from "../limits/usage-meter.js";
import { BadRequestError, GatewayError, NotFoundError, PermissionError, UpstreamError } from "../errors/errors.js";
import { assertRequestShape, duplicateTopLevelKey } from "../proxy/request-shape.js";
import { locals, rawBody } from "./request-context.js";

/** Fields only Gatehouse understands; never sent to a real upstream. */
const GATEWAY_ONLY_FIELDS = ["mock_response"] as const;
/** Bytes of an upstream error body kept for the client's message. */
const MAX_ERROR_BODY = 64 * 1024;

export interface ProxyDeps {
  /** Upstream refused the gateway's own credentials: the operator must hear of it (the client gets a 502). */
  onUpstreamAuthFailure: (deployment: ModelDeployment, status: number) => void;
  models: ModelRouter;
  providers: Record<ProviderName, Provider>;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
}

/** The OpenAI-compatible routes. Authentication (a virtual key) is applied by the caller. */
export function proxyRoutes(deps: ProxyDeps): Router {
  const { models } = deps;
  const router = Router();
  const relay = (endpoint: Endpoint) => (req: Request, res: Response) => forward(endpoint, req, res, deps);

  router.post(["/v1/chat/completions", "/chat/completions"], relay("chat.completions"));
  router.post(["/v1/completions", "/completions"], relay("completions"));
  router.post(["/v1/embeddings", "/embeddings"], relay("embeddings"));
  router.get(["/v1/models", "/models"], (_req, res) => {
    const record = locals(res).auth!.record;
    const data = [...models.modelNames()]
      .filter((name) => keyAllowsModel(record, name))
      .map((id) => ({ id, object: "model", created: 0, owned_by: "gatehouse" }));
    res.json({ object: "list", data });
  });
  // The OpenAI SDK's models.retrieve(id). A model the key may not use is "not found", as OpenAI answers.
  router.get(["/v1/models/:id", "/models/:id"], (req, res) => {
    const record = locals(res).auth!.record;
    const id = String(req.params.id);
    if (!models.modelNames().has(id) || !keyAllowsModel(record, id)) throw new NotFoundError(`The model '${id}' does not exist or this key may not use it.`, "model", "model_not_found");
    res.json({ id, object: "model", created: 0, owned_by: "gatehouse" });
  });
  return router;
}

/** Spend and limits apply when the key has limits or the model has a price; otherwise nothing is metered. */
function needsMetering(record: AuthRecord, deployment: ModelDeployment): boolean {
  return (
    deployment.inputCostPerToken > 0 ||
    deployment.outputCostPerToken > 0 ||
    record.maxBudget !== null ||
    record.rpmLimit !== null ||
    record.tpmLimit !== null ||
    record.maxParallelRequests !== null
  );
}

async function forward(endpoint: Endpoint, req: Request, res: Response, deps: ProxyDeps): Promise<void> {
  const { models, providers } = deps;
  const body = req.body as unknown;
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new BadRequestError("request body must be a JSON object (Content-Type: application/json)");
  }
  const request = body as Record<string, unknown>;
  const raw = rawBody(req);
  const duplicate = raw ? duplicateTopLevelKey(raw) : null;
  if (duplicate !== null) throw new BadRequestError(`the field '${duplicate}' appears more than once in the request body`, duplicate, "duplicate_field");
  const model = request.model;
  if (typeof model !== "string" || model.length === 0) throw new BadRequestError("'model' is required and must be a string", "model", "missing_model");
  if (request.stream !== undefined && typeof request.stream !== "boolean") throw new BadRequestError("'stream' must be a boolean", "stream");
  assertRequestShape(endpoint, request);
  const ctx = locals(res);
  const deployment = models.pick(model);
  if (!deployment) throw new NotFoundError(`The model '${model}' does not exist on this gateway.`, "model", "model_not_found");
  // Only a model this gateway serves is logged and used as a metric label: the client's string could be
  // anything, a key included, and unbounded label values would swamp Prometheus.
  ctx.model = model;
  if (!keyAllowsModel(ctx.auth!.record, model)) throw new PermissionError(`This key is not allowed to use the model '${model}'.`, "model_not_allowed", "model");

  const stream = endpoint !== "embeddings" && request.stream === true;
  const record = ctx.auth!.record;
  const metered = needsMetering(record, deployment);
  const clientAskedForUsage = stream && (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  // Streams report usage only when asked; Gatehouse asks whenever it has to charge the request.
  const askForUsage = metered && stream && !clientAskedForUsage;
  // Most configs name a model as upstream does; then the client's bytes go upstream untouched.
  const unchanged = !askForUsage && deployment.upstreamModel === model && (deployment.provider === "mock" || !GATEWAY_ONLY_FIELDS.some((f) => f in request));
  let upstreamBody = request;
  if (!unchanged) {
    upstreamBody = { ...request, model: deployment.upstreamModel };
    if (deployment.provider !== "mock") for (const field of GATEWAY_ONLY_FIELDS) delete upstreamBody[field];
    if (askForUsage) upstreamBody.stream_options = { ...(request.stream_options as object | undefined), include_usage: true };
  }

  let lease: Lease | undefined;
  if (metered) {
    const worst = worstCaseCharge(deployment, endpoint, request, raw?.length ?? JSON.stringify(request).length, deps.defaultMaxTokens);
    lease = await deps.limits.admit({ keyId: record.keyId, maxBudget: record.maxBudget, rpmLimit: record.rpmLimit, tpmLimit: record.tpmLimit, maxParallelRequests: record.maxParallelRequests }, worst);
    for (const [name, value] of Object.entries(lease.headers)) res.setHeader(name, value);
  }
  const meter: UsageMeter | undefined = lease ? (stream ? sseUsageMeter(clientAskedForUsage) : jsonUsageMeter()) : undefined;
  let relayed = false;
  try {
    relayed = await relay(endpoint, res, deployment, upstreamBody, unchanged ? raw : undefined, stream, providers, meter, deps.onUpstreamAuthFailure);
  } finally {
    // Whatever way the request ended, its reservation is released: charged its usage when upstream
    // reported it, its reservation (the worst case) when it was relayed without one, nothing when
    // upstream failed before answering.
    if (lease) {
      const usage = meter?.usage;
      deps.limits.settle(lease, usage ? priceOf(deployment, usage) : relayed ? undefined : priceOf(deployment, { promptTokens: 0, completionTokens: 0 }));
    }
  }
}

/** Sends the call upstream and relays the answer; returns whether an upstream answer was relayed (even in part). */
async function relay(
  endpoint: Endpoint,
  res: Response,
  deployment: ModelDeployment,
  upstreamBody: Record<string, unknown>,
  raw: Buffer | undefined,
  stream: boolean,
  providers: Record<ProviderName, Provider>,
  meter: UsageMeter | undefined,
  onUpstreamAuthFailure: ProxyDeps["onUpstreamAuthFailure"],
): Promise<boolean> {
  // A client that goes away aborts the upstream call: nobody is left to read the answer.
  const abort = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) abort.abort();
  });

  // Time on the upstream, from sending the call until its answer is relayed or has failed: the request's
  // latency minus this is the gateway's overhead (metrics).
  const upstreamStarted = performance.now();
  try {
    const upstream = await providers[deployment.provider].forward({ endpoint, deployment, body: upstreamBody, rawBody: raw, stream, signal: abort.signal });
    if (upstream.status >= 300) throw await upstreamFailure(upstream, deployment, onUpstreamAuthFailure);
    return await relayAnswer(res, stream, meter, abort, upstream);
  } finally {
    locals(res).upstreamSeconds = (performance.now() - upstreamStarted) / 1000;
  }
}

/** Relays an upstream answer (status, headers, body) to the client, metering usage on the way. */

async function relayAnswer(res: Response, stream: boolean, meter: UsageMeter | undefined, abort: AbortController, upstream: UpstreamResponse): Promise<boolean> {

  res.status(upstream.status);
  res.setHeader("content-type", upstream.contentType);
  if (stream) {
    res.setHeader("cache-control", "no-cache");
    res.setHeader("x-accel-buffering", "no"); // nginx in front must not buffer the stream
    res.flushHeaders();
  }
  try {
    for await (const chunk of upstream.body) {
      if (abort.signal.aborted) return true;
      const out = meter ? meter.pass(chunk) : chunk;
      if (out.length === 0) continue;
      if (!res.write(out)) await once(res, "drain", { signal: abort.signal });
    }
    const rest = meter?.end();
    if (rest) res.end(rest);
    else res.end();
  } catch (err) {
    if (abort.signal.aborted) return true;
    endBrokenStream(res, err);
  }
  return true;
}

/**
 * What the client is told when upstream refused (docs/security.md):
 * - 400, 404, 409, 413, 422: about the client's request: relayed with upstream's status and message;
 * - 429: relayed with its Retry-After;
 * - 401, 403: upstream refused **this gateway's** credentials, not the client's: 502 `upstream_auth_failed`,
 *   logged for the operator; upstream's message (which may quote part of the upstream key) is not relayed;
 * - 3xx, 5xx and anything else: 502 with a short message of ours; an HTML error page is never echoed.
 */
async function upstreamFailure(upstream: UpstreamResponse, deployment: ModelDeployment, onUpstreamAuthFailure: (deployment: ModelDeployment, status: number) => void): Promise<GatewayError> {
  let text = "";
  for await (const chunk of upstream.body) {
    if (text.length < MAX_ERROR_BODY) text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  }
  const status = upstream.status;
  if (status === 401 || status === 403) {
    onUpstreamAuthFailure(deployment, status);
    return new UpstreamError(502, `the upstream provider refused this gateway's credentials for model '${deployment.modelName}'; the gateway's operator must fix its configuration`, "upstream_auth_failed");
  }
  const relayed = status === 400 || status === 404 || status === 409 || status === 413 || status === 422 || status === 429;
  if (!relayed) return new UpstreamError(502, `the upstream provider answered ${status} for model '${deployment.modelName}'`, "upstream_bad_response");
  let parsed: { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } } | undefined;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const e = parsed?.error;
  const message = typeof e?.message === "string" ? e.message.slice(0, 2_000) : `the upstream provider answered ${status}`;
  const type = typeof e?.type === "string" ? e.type : "upstream_error";
  const code = typeof e?.code === "string" || typeof e?.code === "number" ? String(e.code) : `upstream_${status}`;
  const retryAfter = upstream.retryAfter;
  const error = new UpstreamError(status, message, code, type, status === 429 && retryAfter ? { "retry-after": retryAfter } : {});
  return typeof e?.param === "string" ? Object.assign(error, { param: e.param }) : error;
}

/** After the headers are out, an error can only be told in-band: an SSE error event, then the end. */
function endBrokenStream(res: Response, err: unknown): void {
  const error = err instanceof GatewayError ? err : new UpstreamError(502, "the upstream stream failed", "upstream_stream_failed");
  if (res.getHeader("content-type")?.toString().startsWith("text/event-stream")) {
    res.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
  } else {
    res.destroy();
  }
}
