import { callerAllowsModel } from "../auth/auth-record.js";
import type { ModelDeployment, ProviderName } from "../config/settings.js";
import { isRelayedStatus, type RelayedStatusCode } from "../errors/error-codes.js";
import { BadRequestError, DeploymentAtCapacityError, type GatewayError, NotFoundError, PermissionError, UpstreamError } from "../errors/errors.js";
import type { RequestLimits } from "../limits/admission.js";
import type { Lease, LimitEnforcer } from "../limits/limit-enforcer.js";
import { worstCaseCharge } from "../limits/pricing.js";
import { requestLimitsOf, withDeployment, withModelLimits } from "../limits/request-limits.js";
import { jsonUsageMeter, sseUsageMeter, type UsageMeter } from "../limits/usage-meter.js";
import type { RouterSettings } from "../config/router-settings.js";
import { AttemptPlan, failureKindOf, type RequestRouting } from "./attempts.js";
import type { DeploymentLoad } from "./deployment-load.js";
import type { RoutingStrategy } from "./routing-strategy.js";
import type { DeploymentHealth } from "./deployment-health.js";
import type { InboundApi } from "./inbound/inbound-api.js";
import { ClientGone, type Endpoint, type Provider, type UpstreamResponse } from "./provider.js";
import { SseReader, type SseFrame } from "./sse.js";
import { StraightAttempt } from "./straight-attempt.js";
import { AttemptCharge } from "./attempt-charge.js";
import { type AnswerWriter, MAX_ERROR_BODY, type RelayAnswer, type RelayRecord } from "./relay-record.js";

export type { AnswerWriter, DirectWriter, RelayAnswer, RelayRecord } from "./relay-record.js";
import { upstreamStreamError } from "./translate/anthropic-from-chat.js";
import type { ChatChunk, ChatResponse } from "./translate/chat-types.js";

/**
 * One relayed request, from its parsed body to its settled charge (docs/providers.md, "The relay"): the model and
 * its deployment, the caller's right to it, the choice between the shape the client spoke and a translation through
 * chat completions, the reservation against every limit, the upstream call, the answer (metered, translated) and
 * the settlement. Every API shape goes through here; the HTTP routes only read requests and write answers.
 */
export interface RelayDeps {
  /** The deployments that serve a model name, first choice first (models/model-registry.ts); undefined when none does. */
  models: { pick(model: string): ModelDeployment[] | undefined | Promise<ModelDeployment[] | undefined> };
  /** Retries, fallbacks and cooldowns (docs/routing.md). */
  routing: RouterSettings;
  health: DeploymentHealth;
  /** Deployments' load and latency, and the strategy that orders a model's deployments by them. */
  load: DeploymentLoad;
  strategy: RoutingStrategy;
  providers: Record<ProviderName, Provider>;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
  /** Usage is read from every answer when spend is logged (the row carries it), not only when it is charged. */
  logsSpend: boolean;
  /** Upstream refused the gateway's own credentials: the operator must hear of it (the client gets a 502). */
  onUpstreamAuthFailure: (deployment: ModelDeployment, status: number) => void;
  /** May requests that qualify be relayed straight (`server.straight_path`)? Off, every request goes the general way. */
  straight: boolean;
  /** Counts each upstream attempt by the way it was made (a metric). */
  countAttempt: (way: "straight" | "general") => void;
}

export interface RelayRequest {
  /** The body's bytes, forwarded as they are when nothing in them changes. */
  raw: Buffer;
  body: Record<string, unknown>;
  /** The client's `anthropic-beta` header, for Anthropic deployments. */
  anthropicBeta?: string | undefined;
}

export class Relay {
  constructor(private readonly deps: RelayDeps) {}

  async relay(x: RelayRecord, api: InboundApi, request: RelayRequest, out: AnswerWriter): Promise<void> {
    const { deps } = this;
    const { body } = request;
    const named = body.model;
    if (typeof named !== "string" || named.length === 0) throw new BadRequestError("'model' is required and must be a string", { code: "missing_model", param: "model" });
    if (body.stream !== undefined && typeof body.stream !== "boolean") throw new BadRequestError("'stream' must be a boolean", { param: "stream" });
    api.check(body);
    const { record, team, user = null } = x.auth!;
    if (record.enforcedParams) requireEnforcedParams(record.enforcedParams, body);
    // A key's alias names the served model it stands for: access, limits and routing are the served model's.
    const model = record.aliases?.[named] ?? named;
    const asked = requestRouting(request);
    if (asked) request = asked.request;
    const routed = this.route(model);
    const deployments = routed instanceof Promise ? await routed : routed;
    if (!deployments) throw new NotFoundError(`The model '${model}' does not exist on this gateway.`, { code: "model_not_found", param: "model" });
    // Only a model this gateway serves is logged and used as a metric label: the client's string could be
    // anything, a key included, and unbounded label values would swamp Prometheus.
    x.model = model;
    if (!callerAllowsModel(record, team, model, user)) {
      const who = !callerAllowsModel(record, null, model) ? "This key is" : team !== null && !callerAllowsModel(record, team, model) ? "This key's team is" : "This key's user is";
      throw new PermissionError(`${who} not allowed to use the model '${model}'.`, { code: "model_not_allowed", param: "model" });
    }
    x.stream = api.streams(body);
    x.requestMetadata = body.metadata;
    // A client that goes away aborts the upstream call: nobody is left to read the answer. The writer may have made
    // the signal when the request arrived (then a client gone while the request was authenticated or routed has
    // already aborted it, and the attempt stops at once).
    x.abort ??= new ClientGone();
    // Every attempt of the request, its retries and fallbacks, under one budget (proxy/attempts.ts).
    const plan = new AttemptPlan(
      model,
      deployments,
      deps.routing,
      deps.health,
      (m) => callerAllowsModel(record, team, m, user),
      async (m) => this.route(m),
      asked?.routing,
    );
    for (;;) {
      // The first deployment is known at once in the usual case (no turn of the loop for it).
      const next = plan.next();
      const deployment = next instanceof Promise ? await next : next;
      if (deployment === undefined) throw plan.exhausted();
      x.deployment = deployment;
      x.answering = false;
      try {
        await this.attempt(x, api, request, out, deployment, plan);
        return;
      } catch (err) {
        if (err instanceof DeploymentAtCapacityError && !x.answering) {
          deps.load.outcome(deployment.id, "at_capacity");
          plan.atCapacity(deployment, err);
          continue;
        }
        // Once the answer began, or for a failure that is not the upstream's (a limit, the client leaving), the
        // request ends here; an upstream failure before the first byte is tried again elsewhere if the plan allows.
        const kind = x.answering ? null : failureKindOf(err);
        if (kind === null) throw err;
        deps.load.outcome(deployment.id, kind);
        // A model's only deployment never cools down (LiteLLM's rule): leaving it out would only turn its errors into 503s.
        await deps.health.failed(deployment, kind, plan.hasAlternatives());
        plan.failed(deployment, kind, err);
        x.attempts = plan.attempts;
      }
    }
  }

  /**
   * A model's deployments, first choice first: the router's rotation, ordered by the routing strategy. Without a
   * promise when the model list answers now and the strategy orders at once (the usual case); a promise otherwise.
   */
  private route(model: string): ModelDeployment[] | undefined | Promise<ModelDeployment[] | undefined> {
    const { strategy } = this.deps;
    const listed = this.deps.models.pick(model);
    if (listed instanceof Promise) return listed.then((later) => later && strategy.order(later));
    return listed && strategy.order(listed);
  }

  /** One attempt on one deployment: admission priced at it, the call, the answer (the first byte ends retrying). */
  private async attempt(x: RelayRecord, api: InboundApi, request: RelayRequest, out: AnswerWriter, deployment: ModelDeployment, plan: AttemptPlan): Promise<void> {
    const { deps } = this;
    const { body, raw } = request;
    const { record, team, user = null } = x.auth!;
    const stream = x.stream;
    const abort = x.abort!;
    const provider = deps.providers[deployment.provider];
    const native = provider.speaks(api.endpoint, deployment);
    if (!native && !(api.viaChat && provider.speaks("chat.completions", deployment))) {
      if (api.estimate) {
        const estimate = api.estimate(body);
        for (const name in estimate.headers) out.setHeader(name, estimate.headers[name]!);
        x.answering = true;
        return out.send({ status: 200, contentType: "application/json", stream: false, body: [JSON.stringify(estimate.body)] });
      }
      throw new BadRequestError(`The model '${deployment.modelName}' (${deployment.provider}) does not serve ${api.endpoint}.`, { code: "endpoint_not_supported", param: "model" });
    }

    const limits = withDeployment(withModelLimits(requestLimitsOf(record, team, user), record, deployment.modelName), deployment, deps.strategy.tracksLoad);
    const metered = !api.free && needsMetering(limits, deployment);
    let endpoint: Endpoint;
    let upstreamBody: Record<string, unknown>;
    let rawBody: Buffer | undefined;
    let meter: UsageMeter | undefined;
    let translate: Pick<RelayAnswer, "pass" | "end"> | undefined;
    if (native) {
      endpoint = api.endpoint;
      const changed = api.nativeBody(body, deployment, metered, raw);
      upstreamBody = changed?.body ?? body;
      rawBody = changed === null ? raw : changed.raw;
      // Usage is read from the answer when the request is charged, and for its spend log row (the tail of an
      // answer costs little to read; a stream reports usage only if the client or the charge asked for it).
      if ((metered || deps.logsSpend) && !api.free) meter = api.meter(body, stream);
    } else {
      // Translated: the answer must report usage whatever is charged (the client's shape carries it).
      endpoint = "chat.completions";
      upstreamBody = { ...api.viaChat!.toChat(body), model: deployment.upstreamModel };
      if (stream) upstreamBody.stream_options = { include_usage: true };
      meter = stream ? sseUsageMeter(true) : jsonUsageMeter();
      translate = stream ? chatStreamTranslation(api, body, meter) : chatJsonTranslation(api, body, meter);
    }

    // A request no level limits, on a route its deployment speaks as it is, to a provider that can be called
    // through callbacks, is relayed straight (proxy/straight-attempt.ts): nothing in it waits on Redis or on a
    // promise per step. Everything else, and every attempt the straight one hands back, goes the general way below.
    const straight = deps.straight && native && limits.subjects.length === 0 && provider.dispatch !== undefined && out.direct !== undefined;
    let lease: Lease | undefined;
    if (metered) {
      const output = endpoint === "embeddings" ? null : { maxTokens: api.maxOutputTokens(body), choices: body.n };
      const reserved = worstCaseCharge(deployment, raw.length, output, deps.defaultMaxTokens);
      lease = straight ? deps.limits.unlimited(limits, reserved) : await deps.limits.admit(limits, reserved);
      for (const name in lease.headers) out.setHeader(name, lease.headers[name]!);
    }
    const charge = new AttemptCharge(x, deps.limits, deployment, lease, meter);
    // The first call's start ends the gateway's own time before the upstream (docs/performance.md); each call's
    // time to its answer is the deployment's latency (latency-based routing).
    const upstreamStarted = performance.now();
    if (x.upstreamStartedAt === 0) x.upstreamStartedAt = upstreamStarted;
    deps.load.began(deployment.id);
    try {
      // The signal is in the call from the start: a spread copy given a field it lacked is dear in V8.
      const call = { endpoint, deployment, body: upstreamBody, rawBody, stream, anthropicBeta: request.anthropicBeta, signal: abort };
      deps.countAttempt(straight ? "straight" : "general");
      if (straight) {
        const attempt = new StraightAttempt(x, out.direct!, call, {
          meter,
          charge,
          routing: plan.answerHeaders(deployment),
          load: deps.load,
          startedAt: upstreamStarted,
          refused: (upstream) => this.upstreamFailure(upstream, deployment),
        });
        provider.dispatch!(call, attempt);
        return await attempt.done;
      }
      const upstream = await provider.forward(call);
      if (upstream.status >= 300) throw await this.upstreamFailure(upstream, deployment);
      // A stream's first chunk is read before anything reaches the client: an error there (Anthropic's overloaded
      // right after its 200) is still a failure to retry elsewhere, not a broken answer.
      const body = stream ? await firstChunkChecked(upstream.body, native && deployment.provider === "anthropic") : upstream.body;
      charge.relayed = true;
      deps.load.answeredIn(deployment.id, performance.now() - upstreamStarted);
      deps.load.outcome(deployment.id, "answered");
      if (upstream.headers) for (const name in upstream.headers) out.setHeader(name, upstream.headers[name]!);
      x.answering = true;
      const answer: RelayAnswer = { status: upstream.status, contentType: upstream.contentType, stream, body, routing: plan.answerHeaders(deployment) };
      if (translate) Object.assign(answer, translate, { contentType: stream ? "text/event-stream" : "application/json" });
      else if (meter) Object.assign(answer, { pass: meter.pass, end: meter.end });
      if (lease && lease.admittedBy !== "none") answer.beforeEnd = charge.settle;
      await out.send(answer);
    } finally {
      deps.load.ended(deployment.id);
      void charge.settle();
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
  async upstreamFailure(upstream: UpstreamResponse, deployment: ModelDeployment): Promise<GatewayError> {
    let text = "";
    for await (const chunk of upstream.body) {
      if (text.length < MAX_ERROR_BODY) text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    }
    const status = upstream.status;
    if (status === 401 || status === 403) {
      this.deps.onUpstreamAuthFailure(deployment, status);
      return new UpstreamError(`the upstream provider refused this gateway's credentials for model '${deployment.modelName}'; the gateway's operator must fix its configuration`, {
        code: "upstream_auth_failed",
      });
    }
    if (!isRelayedStatus(status)) return new UpstreamError(`the upstream provider answered ${status} for model '${deployment.modelName}'`, { code: "upstream_bad_response" });
    let parsed: { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } } | undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const e = parsed?.error;
    const message = typeof e?.message === "string" ? e.message.slice(0, 2_000) : `the upstream provider answered ${status}`;
    const type = typeof e?.type === "string" ? e.type : "upstream_error";
    const retryAfter = upstream.retryAfter;
    const headers: Record<string, string> = status === 429 && retryAfter ? { "retry-after": retryAfter } : {};
    const param = typeof e?.param === "string" ? e.param : null;
    if (typeof e?.code === "string" || typeof e?.code === "number") {
      return new UpstreamError(message, { relayed: "<upstream's code>", status, type, code: String(e.code), param, headers });
    }
    const ownCode: RelayedStatusCode = `upstream_${status}`;
    return new UpstreamError(message, { relayed: ownCode, status, type, code: ownCode, param, headers });
  }
}

type Chunk = Uint8Array | string;

/**
 * The stream with its first chunk already read (the same chunks, in order, at no cost per chunk after it). A stream
 * whose first chunk is an error — a translation that threw on it, or Anthropic's own `event: error` when its events
 * pass through — rejects here, before the client has a byte.
 */
async function firstChunkChecked(body: UpstreamResponse["body"], anthropicEvents: boolean): Promise<UpstreamResponse["body"]> {
  const it: Iterator<Chunk> | AsyncIterator<Chunk> =
    Symbol.asyncIterator in body ? (body as AsyncIterable<Chunk>)[Symbol.asyncIterator]() : (body as Iterable<Chunk>)[Symbol.iterator]();
  const first = await it.next();
  if (first.done) return [];
  if (anthropicEvents) {
    const text = typeof first.value === "string" ? first.value : Buffer.from(first.value.buffer, first.value.byteOffset, first.value.byteLength).toString("utf8");
    if (/^\s*event:\s*error\b/.test(text)) {
      const data = /^data:\s*(.*)$/m.exec(text)?.[1];
      let error: unknown;
      try {
        error = data ? (JSON.parse(data) as { error?: unknown }).error : undefined;
      } catch {}
      await it.return?.();
      throw upstreamStreamError(error);
    }
  }
  let given = false;
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        if (given) return Promise.resolve(it.next());
        given = true;
        return Promise.resolve(first);
      },
      return: (value?: unknown) => Promise.resolve(it.return?.(value as never) ?? { done: true as const, value: undefined }),
    }),
  } as AsyncIterable<Chunk>;
}

/**
 * LiteLLM's request-level `num_retries` and `fallbacks` (docs/routing.md): read here and never sent upstream (the
 * body is rewritten without them). A client may ask for fewer retries than the config gives, never more, and its
 * fallbacks go through the same rule as the config's: only models its key, team and user may use.
 */
function requestRouting(request: RelayRequest): { request: RelayRequest; routing: RequestRouting } | undefined {
  // Looked up before the body is copied without them: most requests have neither.
  if (request.body.num_retries === undefined && request.body.fallbacks === undefined) return undefined;
  const { num_retries: retries, fallbacks, ...rest } = request.body;
  if (retries !== undefined && (typeof retries !== "number" || !Number.isInteger(retries) || retries < 0 || retries > 100))
    throw new BadRequestError("'num_retries' must be an integer from 0 to 100", { code: "invalid_value", param: "num_retries" });
  if (fallbacks !== undefined && (!Array.isArray(fallbacks) || fallbacks.length > 20 || !fallbacks.every((f) => typeof f === "string" && f.length > 0)))
    throw new BadRequestError("'fallbacks' must be a list of at most 20 model names", { code: "invalid_value", param: "fallbacks" });
  return {
    request: { ...request, body: rest, raw: Buffer.from(JSON.stringify(rest)) },
    routing: { numRetries: retries as number | undefined, fallbacks: fallbacks as string[] | undefined },
  };
}

/** Spend and limits apply when a level of the request has limits or the model has a price; otherwise nothing is metered. */
function needsMetering(limits: RequestLimits, deployment: ModelDeployment): boolean {
  return deployment.inputCostPerToken > 0 || deployment.outputCostPerToken > 0 || limits.subjects.length > 0;
}

/** A chat answer (JSON) in the client's shape: held until complete, then translated whole. */
function chatJsonTranslation(api: InboundApi, body: Record<string, unknown>, meter: UsageMeter): Pick<RelayAnswer, "pass" | "end"> {
  const parts: Array<Uint8Array | string> = [];
  return {
    pass(chunk) {
      meter.pass(chunk);
      parts.push(chunk);
      return "";
    },
    end() {
      meter.end();
      const text = parts.map((p) => (typeof p === "string" ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString("utf8"))).join("");
      let answer: ChatResponse;
      try {
        answer = JSON.parse(text) as ChatResponse;
      } catch {
        throw new UpstreamError("the upstream answer is not JSON", { code: "upstream_bad_response" });
      }
      return JSON.stringify(api.viaChat!.fromChatJson(answer, body));
    },
  };
}

/** A chat stream in the client's shape: the meter reads the usage chunk, then each chunk is translated. */
export function chatStreamTranslation(api: InboundApi, body: Record<string, unknown>, meter: UsageMeter): Pick<RelayAnswer, "pass" | "end"> {
  const reader = new SseReader();
  const translator = api.viaChat!.fromChatStream(body);
  const translateFrames = (frames: SseFrame[]): string => {
    let out = "";
    for (const frame of frames) {
      if (frame.data === "" || frame.data === "[DONE]") continue;
      let chunk: ChatChunk & { error?: { message?: unknown; code?: unknown } };
      try {
        chunk = JSON.parse(frame.data);
      } catch {
        throw new UpstreamError("the upstream stream sent a chunk that is not JSON", { code: "upstream_stream_invalid" });
      }
      if (chunk.error) throw new UpstreamError(`the upstream stream failed: ${String(chunk.error.message ?? "unknown error")}`.slice(0, 2_000), { code: "upstream_stream_failed" });
      out += translator.push(chunk);
    }
    return out;
  };
  return {
    pass(chunk) {
      const metered = meter.pass(chunk);
      return metered === "" ? "" : translateFrames(reader.push(metered));
    },
    end() {
      const rest = meter.end();
      return translateFrames([...reader.push(rest), ...reader.end()]) + translator.end();
    },
  };
}

/**
 * A key's `enforced_params` (LiteLLM's): each names a request parameter that must be present — a top-level field
 * (`user`) or a dotted path into an object (`metadata.project`). Missing ones are a 400 naming all of them.
 */
function requireEnforcedParams(required: readonly string[], body: Record<string, unknown>): void {
  const missing = required.filter((path) => {
    let at: unknown = body;
    for (const part of path.split(".")) {
      if (at === null || typeof at !== "object" || !(part in at)) return true;
      at = (at as Record<string, unknown>)[part];
    }
    return at === undefined || at === null;
  });
  if (missing.length > 0)
    throw new BadRequestError(`This key requires these request parameters, which this request lacks: ${missing.join(", ")}.`, {
      code: "missing_enforced_params",
      param: missing[0]!,
    });
}
