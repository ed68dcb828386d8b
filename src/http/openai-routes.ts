import type { IncomingMessage, ServerResponse } from "node:http";
import { callerAllowsModel } from "../auth/auth-record.js";
import type { AuthResult } from "../auth/authenticator.js";
import type { ModelDeployment, ProviderName } from "../config/settings.js";
import { BadRequestError, GatewayError, NotFoundError, PermissionError, UpstreamError } from "../errors/errors.js";
import type { RequestLimits } from "../limits/admission.js";
import type { SpendLogRow } from "../store/spend-log-store.js";
import type { Lease, LimitEnforcer } from "../limits/limit-enforcer.js";
import { requestLimitsOf } from "../limits/request-limits.js";
import { priceOf, worstCaseCharge } from "../limits/pricing.js";
import { jsonUsageMeter, sseUsageMeter, type UsageMeter } from "../limits/usage-meter.js";
import type { Logger } from "../logger.js";
import type { RouteRecorder } from "../metrics/metrics.js";
import type { ModelRegistry } from "../models/model-registry.js";
import { ClientGone, type Endpoint, type Provider, type UpstreamResponse } from "../proxy/provider.js";
import { assertRequestShape, duplicateTopLevelKey } from "../proxy/request-shape.js";
import type { AccessLog, RequestRecord } from "./access-log.js";
import type { CallerAuth } from "./auth-middleware.js";
import { classifyError, isClientAbort, serializeError, writeError, writeJson } from "./error-mapping.js";
import { newRequestId } from "./request-id.js";
import { loggablePath, pathOf } from "./loggable-path.js";
import { parseJsonBody, readJsonBody } from "./request-body.js";

/**
 * The OpenAI routes, served at the node:http level in front of the express app: the hot path of a gateway,
 * where a framework's per-request routing and middleware cost more than the gateway's own work
 * (docs/performance.md). Everything else — admin API, health, metrics, OpenAPI — is the express app's.
 *
 * Authentication, limits, metering, logging and errors are the same implementations the express app uses
 * (CallerAuth, LimitEnforcer, AccessLog, error-mapping.ts); only the routing is this module's own.
 * The path is exact, as the OpenAI SDKs send it: `/v1/...` and the unprefixed forms LiteLLM also serves.
 */
export interface OpenAIRouteDeps {
  auth: CallerAuth;
  accessLog: AccessLog;
  logger: Logger;
  models: ModelRegistry;
  providers: Record<ProviderName, Provider>;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
  maxRequestBodyBytes: number;
  /** Upstream refused the gateway's own credentials: the operator must hear of it (the client gets a 502). */
  onUpstreamAuthFailure: (deployment: ModelDeployment, status: number) => void;
  /** Where each finished request's spend log row goes (null: spend_logs.logging off). */
  spendLogs: { record(row: SpendLogRow): void } | null;
  replicaId: string;
}

type RouteKind = "relay" | "list-models" | "get-model";

interface Route {
  /** The pattern logged and used as a metric label. */
  readonly pattern: string;
  readonly kind: RouteKind;
  readonly endpoint: Endpoint | undefined;
  readonly recorder: RouteRecorder | undefined;
}

/** Every method and path these routes serve (OpenAPI patterns), for the OpenAPI document's test. */
export const OPENAI_ROUTES: ReadonlyArray<{ method: "get" | "post"; path: string }> = [
  ...["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings", "/embeddings"].map((path) => ({ method: "post" as const, path })),
  ...["/v1/models", "/models", "/v1/models/{id}", "/models/{id}"].map((path) => ({ method: "get" as const, path })),
];

const RELAYED: ReadonlyArray<[string, Endpoint]> = [
  ["/v1/chat/completions", "chat.completions"],
  ["/chat/completions", "chat.completions"],
  ["/v1/completions", "completions"],
  ["/completions", "completions"],
  ["/v1/embeddings", "embeddings"],
  ["/embeddings", "embeddings"],
];

/** Fields only Gatehouse understands; never sent to a real upstream. */
const GATEWAY_ONLY_FIELDS = ["mock_response"] as const;
/** Bytes of an upstream error body kept for the client's message. */
const MAX_ERROR_BODY = 64 * 1024;

export class OpenAIRoutes {
  /** "METHOD /path" → route: one map look-up per request, no pattern matching. */
  private readonly exact = new Map<string, Route>();
  private readonly getModel: Route;
  private readonly getModelUnprefixed: Route;

  constructor(private readonly deps: OpenAIRouteDeps) {
    const route = (pattern: string, kind: RouteKind, endpoint?: Endpoint): Route => ({ pattern, kind, endpoint, recorder: deps.accessLog.recorder(pattern) });
    for (const [path, endpoint] of RELAYED) this.exact.set(`POST ${path}`, route(path, "relay", endpoint));
    for (const path of ["/v1/models", "/models"]) this.exact.set(`GET ${path}`, route(path, "list-models"));
    this.getModel = route("/v1/models/:id", "get-model");
    this.getModelUnprefixed = route("/models/:id", "get-model");
  }

  /** Serves the request if it is one of the OpenAI routes; false leaves it to the express app. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = pathOf(req.url);
    let route = this.exact.get(`${req.method} ${path}`);
    if (route === undefined && req.method === "GET") {
      if (path.startsWith("/v1/models/") && path.length > 11 && path.indexOf("/", 11) === -1) route = this.getModel;
      else if (path.startsWith("/models/") && path.length > 8 && path.indexOf("/", 8) === -1) route = this.getModelUnprefixed;
    }
    if (route === undefined) return false;
    const exchange = new Exchange(this, req, res, route);
    this.deps.accessLog.begin(req, res, exchange);
    exchange.startedWall = Date.now();
    (res as Tagged)[EXCHANGE] = exchange;
    res.once("close", onResponseClose);
    this.serve(exchange).catch(onServeFailure);
    return true;
  }

  private async serve(x: Exchange): Promise<void> {
    try {
      x.auth = await this.deps.auth.virtualKey(x.req.headers);
      if (x.route.kind === "relay") await this.relayAndLog(x);
      else if (x.route.kind === "list-models") this.listModels(x);
      else this.retrieveModel(x);
    } catch (err) {
      this.fail(x, err);
    }
  }

  private listModels(x: Exchange): void {
    const { record, team, user = null } = x.auth!;
    const data = [];
    for (const id of this.deps.models.modelNames()) if (callerAllowsModel(record, team, id, user)) data.push({ id, object: "model", created: 0, owned_by: "gatehouse" });
    writeJson(x.res, 200, { object: "list", data });
  }

  // The OpenAI SDK's models.retrieve(id). A model the key may not use is "not found", as OpenAI answers.
  private retrieveModel(x: Exchange): void {
    const path = pathOf(x.req.url);
    const id = decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
    if (!this.deps.models.modelNames().has(id) || !callerAllowsModel(x.auth!.record, x.auth!.team, id, x.auth!.user))
      throw new NotFoundError(`The model '${id}' does not exist or this key may not use it.`, "model", "model_not_found");
    writeJson(x.res, 200, { id, object: "model", created: 0, owned_by: "gatehouse" });
  }

  /**
   * A relayed request's spend log row is written once both have happened: the response closed, and the relay
   * finished (a client that leaves mid-answer closes the response first; its charge is known only after).
   */
  private async relayAndLog(x: Exchange): Promise<void> {
    x.relaying = true;
    try {
      await this.relay(x);
    } finally {
      x.relaying = false;
      if (x.endedAt !== 0) this.logSpend(x);
    }
  }

  private logSpend(x: Exchange): void {
    // Every request of a key that named a model this gateway serves: served, refused by a limit, or failed
    // upstream (docs/spend-logs.md).
    if (this.deps.spendLogs !== null && x.auth !== undefined && x.model !== undefined) this.deps.spendLogs.record(spendLogRow(x, this.deps.replicaId));
  }

  private async relay(x: Exchange): Promise<void> {
    const { deps } = this;
    const endpoint = x.route.endpoint!;
    // Authenticated: only now is the body read and parsed.
    const raw = await readJsonBody(x.req, deps.maxRequestBodyBytes);
    const body = parseJsonBody(raw);
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new BadRequestError("request body must be a JSON object (Content-Type: application/json)");
    const request = body as Record<string, unknown>;
    const duplicate = duplicateTopLevelKey(raw);
    if (duplicate !== null) throw new BadRequestError(`the field '${duplicate}' appears more than once in the request body`, duplicate, "duplicate_field");
    const model = request.model;
    if (typeof model !== "string" || model.length === 0) throw new BadRequestError("'model' is required and must be a string", "model", "missing_model");
    if (request.stream !== undefined && typeof request.stream !== "boolean") throw new BadRequestError("'stream' must be a boolean", "stream");
    assertRequestShape(endpoint, request);
    const deployment = await deps.models.pick(model);
    if (!deployment) throw new NotFoundError(`The model '${model}' does not exist on this gateway.`, "model", "model_not_found");
    // Only a model this gateway serves is logged and used as a metric label: the client's string could be
    // anything, a key included, and unbounded label values would swamp Prometheus.
    x.model = model;
    const record = x.auth!.record;
    const { team, user = null } = x.auth!;
    if (!callerAllowsModel(record, team, model, user)) {
      const who = !callerAllowsModel(record, null, model) ? "This key is" : team !== null && !callerAllowsModel(record, team, model) ? "This key's team is" : "This key's user is";
      throw new PermissionError(`${who} not allowed to use the model '${model}'.`, "model_not_allowed", "model");
    }

    const stream = endpoint !== "embeddings" && request.stream === true;
    x.deployment = deployment;
    x.stream = stream;
    x.requestMetadata = request.metadata;
    const limits = requestLimitsOf(record, team, user);
    const metered = needsMetering(limits, deployment);
    const clientAskedForUsage = stream && (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    // Streams report usage only when asked; Gatehouse asks whenever it has to charge the request.
    const askForUsage = metered && stream && !clientAskedForUsage;
    // Most configs name a model as upstream does; then the client's bytes go upstream untouched.
    const unchanged = !askForUsage && deployment.upstreamModel === model && (deployment.provider === "mock" || !hasGatewayOnlyField(request));
    let upstreamBody = request;
    if (!unchanged) {
      upstreamBody = { ...request, model: deployment.upstreamModel };
      if (deployment.provider !== "mock") for (const field of GATEWAY_ONLY_FIELDS) delete upstreamBody[field];
      if (askForUsage) upstreamBody.stream_options = { ...(request.stream_options as object | undefined), include_usage: true };
    }

    let lease: Lease | undefined;
    if (metered) {
      const worst = worstCaseCharge(deployment, endpoint, request, raw.length, deps.defaultMaxTokens);
      lease = await deps.limits.admit(limits, worst);
      for (const name in lease.headers) x.res.setHeader(name, lease.headers[name]!);
    }
    // Usage is read from the answer when the request is charged, and for its spend log row (the tail of an answer
    // costs little to read; a stream reports usage only if the client or the charge asked for it).
    const meter: UsageMeter | undefined = lease || deps.spendLogs !== null ? (stream ? sseUsageMeter(clientAskedForUsage) : jsonUsageMeter()) : undefined;
    let relayed = false;
    // A client that goes away aborts the upstream call (onResponseClose): nobody is left to read the answer.
    const abort = new ClientGone();
    x.abort = abort;
    // Time on the upstream, from sending the call until its answer is relayed or has failed: the request's
    // latency minus this is the gateway's overhead (metrics).
    const upstreamStarted = performance.now();
    try {
      const upstream = await deps.providers[deployment.provider].forward({ endpoint, deployment, body: upstreamBody, rawBody: unchanged ? raw : undefined, stream, signal: abort });
      if (upstream.status >= 300) throw await this.upstreamFailure(upstream, deployment);
      relayed = true;
      await relayAnswer(x, stream, meter, upstream);
    } finally {
      x.upstreamSeconds = (performance.now() - upstreamStarted) / 1000;
      // Whatever way the request ended, its reservation is released: charged its usage when upstream
      // reported it, its reservation (the worst case) when it was relayed without one, nothing when
      // upstream failed before answering.
      const usage = meter?.usage;
      x.usage = usage;
      if (lease) {
        const charge = usage ? priceOf(deployment, usage) : relayed ? undefined : priceOf(deployment, { promptTokens: 0, completionTokens: 0 });
        deps.limits.settle(lease, charge);
        x.cost = (charge ?? lease.reserved).cost;
      }
    }
  }

  /**
   * What the client is told when upstream refused (docs/security.md):
   * - 400, 404, 409, 413, 422: about the client's request: relayed with upstream's status and message;
   * - 429: relayed with its Retry-After;
   * - 401, 403: upstream refused **this gateway's** credentials, not the client's: 502 `upstream_auth_failed`,
   *   logged for the operator; upstream's message (which may quote part of the upstream key) is not relayed;
   * - 3xx, 5xx and anything else: 502 with a short message of ours; an HTML error page is never echoed.
   */
  private async upstreamFailure(upstream: UpstreamResponse, deployment: ModelDeployment): Promise<GatewayError> {
    let text = "";
    for await (const chunk of upstream.body) {
      if (text.length < MAX_ERROR_BODY) text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    }
    const status = upstream.status;
    if (status === 401 || status === 403) {
      this.deps.onUpstreamAuthFailure(deployment, status);
      return new UpstreamError(
        502,
        `the upstream provider refused this gateway's credentials for model '${deployment.modelName}'; the gateway's operator must fix its configuration`,
        "upstream_auth_failed",
      );
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

  /** Every failure of a request, told to the client once, in the registry's shape. */
  fail(x: Exchange, err: unknown): void {
    const { res, req } = x;
    if (isClientAbort(err) && (req.destroyed || res.destroyed || res.writableEnded)) {
      this.deps.logger.debug({ path: loggablePath(pathOf(req.url)) }, "client went away before the answer");
      res.destroy();
      return;
    }
    const error = classifyError(err, this.deps.maxRequestBodyBytes);
    x.errorCode = error?.code ?? "internal_error";
    if (!error) this.deps.logger.error({ err: serializeError(err), path: loggablePath(pathOf(req.url)) }, "unhandled error");
    if (res.headersSent) endBrokenStream(res, err);
    else writeError(res, error);
  }

  /** The request is over, answered or not. */
  closed(x: Exchange): void {
    if (x.abort !== undefined && !x.res.writableFinished) x.abort.abort();
    this.deps.accessLog.end(x.req, x.res, x.route.pattern, x.route.recorder, x);
    x.endedAt = performance.now();
    if (x.route.kind === "relay" && !x.relaying) this.logSpend(x);
  }
}

const MASTER_KEY_TOKEN = "master";
const MAX_TAGS = 32;
const MAX_METADATA_BYTES = 4_096;
// Most requests send no metadata: their rows share one frozen pair instead of each allocating two empty objects.
const NO_TAGS_OR_METADATA = Object.freeze({ tags: Object.freeze([]) as unknown as string[], metadata: Object.freeze({}) as Record<string, unknown> });

/** The spend log row of a finished request (store/spend-log-store.ts, sql/0010). */
function spendLogRow(x: Exchange, replicaId: string): SpendLogRow {
  const latencyMs = x.endedAt - x.startedAt;
  const record = x.auth!.record;
  const isMaster = record.token === MASTER_KEY_TOKEN;
  const usage = x.usage;
  const { tags, metadata } = tagsAndMetadata(x.requestMetadata);
  // The request id the answer carries, unless the client chose it (then it is kept beside ours: not unique).
  const clientId = x.req.headers["x-request-id"];
  const fromClient = typeof clientId === "string" && clientId === x.requestId;
  return {
    // Made from the request's start: a lookup by request id finds the row by the time its id carries.
    request_id: fromClient ? newRequestId(x.startedWall) : x.requestId,
    // Epoch milliseconds: formatting two dates here cost more than the rest of the row.
    start_time: x.startedWall,
    end_time: x.startedWall + Math.round(latencyMs),
    client_request_id: fromClient ? clientId : null,
    key_hash: isMaster ? null : record.token,
    key_id: isMaster ? null : record.keyId,
    key_name: record.keyName,
    key_alias: record.keyAlias,
    team_id: record.teamId,
    user_id: record.userId,
    model: x.model!,
    model_id: x.deployment?.modelId ?? null,
    upstream_model: x.deployment?.upstreamModel ?? null,
    prompt_tokens: usage?.promptTokens ?? 0,
    completion_tokens: usage?.completionTokens ?? 0,
    total_tokens: (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0),
    spend: x.cost,
    latency_ms: Math.round(latencyMs * 1000) / 1000,
    overhead_ms: x.upstreamSeconds === undefined ? null : Math.round((latencyMs - x.upstreamSeconds * 1000) * 1000) / 1000,
    status: x.res.statusCode,
    error_code: x.errorCode ?? (x.res.writableFinished ? null : "client_gone"),
    stream: x.stream,
    replica_id: replicaId,
    tags,
    metadata,
  };
}

/**
 * LiteLLM's request tags (`metadata.tags`) and the rest of the request's metadata, bounded. Text Postgres cannot
 * store (NUL, a lone surrogate) is left out: one such row would make its whole batch refused.
 */
function tagsAndMetadata(value: unknown): { tags: string[]; metadata: Record<string, unknown> } {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return NO_TAGS_OR_METADATA;
  const { tags: raw, ...rest } = value as Record<string, unknown>;
  const tags = Array.isArray(raw) ? raw.filter((t): t is string => typeof t === "string" && t.length > 0 && t.length <= 128 && !unstorableText(t)).slice(0, MAX_TAGS) : [];
  const json = JSON.stringify(rest);
  if (json.length > MAX_METADATA_BYTES) return { tags, metadata: { truncated: true } };
  // JSON.stringify writes NUL as \u0000 and a lone surrogate as \udXXX: either in the text means the metadata is not storable.
  return { tags, metadata: UNSTORABLE_JSON.test(json) ? { unstorable: true } : rest };
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorableText = (t: string) => t.includes("\u0000") || LONE_SURROGATE.test(t);
const UNSTORABLE_JSON = /\\u0000|\\ud[89a-f][0-9a-f]{2}/i;

/** One request on the OpenAI routes: what the access log needs, and the upstream call to abort. */
class Exchange implements RequestRecord {
  requestId = "";
  startedAt = 0;
  auth: AuthResult | undefined = undefined;
  model: string | undefined = undefined;
  upstreamSeconds: number | undefined = undefined;
  abort: ClientGone | undefined = undefined;
  // For the spend log row.
  startedWall = 0;
  /** performance.now() when the response closed; 0 while it is open. */
  endedAt = 0;
  /** The relay (admission, upstream call, settle) has not finished yet. */
  relaying = false;
  deployment: ModelDeployment | undefined = undefined;
  stream = false;
  usage: { promptTokens: number; completionTokens: number } | undefined = undefined;
  cost = 0;
  errorCode: string | undefined = undefined;
  requestMetadata: unknown = undefined;
  /** Writes are being held for the rest of this loop turn (holdWrites). */
  corked = false;

  constructor(
    readonly owner: OpenAIRoutes,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: Route,
  ) {}
}

const EXCHANGE = Symbol("exchange");
type Tagged = { [EXCHANGE]?: Exchange };

// A module function, not a closure per request: `this` is the response it listens on.
function onResponseClose(this: ServerResponse): void {
  const x = (this as Tagged)[EXCHANGE]!;
  x.owner.closed(x);
}

// serve() catches everything; this only guards against a bug in the error path itself.
function onServeFailure(err: unknown): void {
  process.emitWarning(`unexpected failure on an OpenAI route: ${(err as Error)?.message ?? String(err)}`);
}

/** Spend and limits apply when a level of the request has limits or the model has a price; otherwise nothing is metered. */
function needsMetering(limits: RequestLimits, deployment: ModelDeployment): boolean {
  return deployment.inputCostPerToken > 0 || deployment.outputCostPerToken > 0 || limits.subjects.length > 0;
}

function hasGatewayOnlyField(request: Record<string, unknown>): boolean {
  for (const field of GATEWAY_ONLY_FIELDS) if (field in request) return true;
  return false;
}

// A JSON answer up to this size is sent in one write with its Content-Length: one system call instead of a chunked
// write per upstream chunk plus the terminating chunk. Larger answers are relayed as they arrive.
const ONE_WRITE_MAX_BYTES = 1024 * 1024;

/** Relays an upstream answer (status, headers, body) to the client, metering usage on the way. */
async function relayAnswer(x: Exchange, stream: boolean, meter: UsageMeter | undefined, upstream: UpstreamResponse): Promise<void> {
  const { res } = x;
  const signal = x.abort!;
  res.statusCode = upstream.status;
  res.setHeader("content-type", upstream.contentType);
  if (stream) {
    res.setHeader("cache-control", "no-cache");
    res.setHeader("x-accel-buffering", "no"); // nginx in front must not buffer the stream
    holdWrites(x);
    res.flushHeaders();
  }
  let held: Array<Uint8Array | string> | undefined = stream ? undefined : [];
  let heldBytes = 0;
  try {
    for await (const chunk of upstream.body) {
      if (signal.aborted) return;
      const out = meter ? meter.pass(chunk) : chunk;
      if (out.length === 0) continue;
      if (held !== undefined) {
        held.push(out);
        heldBytes += typeof out === "string" ? Buffer.byteLength(out) : out.byteLength;
        if (heldBytes <= ONE_WRITE_MAX_BYTES) continue;
        // Too large to hold: what is held goes out now, the rest as it comes.
        for (const part of held) res.write(part);
        held = undefined;
        continue;
      }
      holdWrites(x);
      if (!res.write(out)) await waitForDrain(res, signal);
    }
    meter?.end();
    if (held === undefined) return void res.end();
    if (held.length === 1) return void endWith(res, held[0]!, heldBytes);
    return void endWith(res, Buffer.concat(held.map((p) => (typeof p === "string" ? Buffer.from(p) : p))), heldBytes);
  } catch (err) {
    if (signal.aborted) return;
    endBrokenStream(res, err);
  }
}

/**
 * Writes made in one turn of the event loop leave in one system call: the socket is corked at the first and
 * uncorked on the next turn (setImmediate). A stream's headers go out with its first frames, and frames that
 * arrive together from upstream leave together, delayed by one loop turn at most — what a system call per
 * frame would cost in CPU is most of a streamed answer's cost otherwise.
 */
function holdWrites(x: Exchange): void {
  if (x.corked) return;
  x.corked = true;
  x.res.cork();
  setImmediate(releaseWrites, x);
}

function releaseWrites(x: Exchange): void {
  x.corked = false;
  x.res.uncork();
}

function endWith(res: ServerResponse, body: Uint8Array | string, bytes: number): void {
  res.setHeader("content-length", bytes);
  res.end(body);
}

function waitForDrain(res: ServerResponse, signal: ClientGone): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal.removeListener("abort", aborted);
      resolve();
    };
    const aborted = () => {
      res.removeListener("drain", done);
      reject(Object.assign(new Error("the client went away"), { name: "AbortError" }));
    };
    res.once("drain", done);
    signal.once("abort", aborted);
  });
}

/** After the headers are out, an error can only be told in-band: an SSE error event, then the end. */
function endBrokenStream(res: ServerResponse, err: unknown): void {
  const error = err instanceof GatewayError ? err : new UpstreamError(502, "the upstream stream failed", "upstream_stream_failed");
  if (String(res.getHeader("content-type") ?? "").startsWith("text/event-stream")) {
    res.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
  } else {
    res.destroy();
  }
}
