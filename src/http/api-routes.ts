import type { IncomingMessage, ServerResponse } from "node:http";
import { callerAllowsModel } from "../auth/auth-record.js";
import type { AuthResult } from "../auth/authenticator.js";
import type { ModelDeployment, ProviderName } from "../config/settings.js";
import { BadRequestError, GatewayError, InternalError, NotFoundError, UpstreamError } from "../errors/errors.js";
import type { LimitEnforcer } from "../limits/limit-enforcer.js";
import type { TokenCount } from "../limits/pricing.js";
import type { Logger } from "../logger.js";
import type { RouteRecorder } from "../metrics/metrics.js";
import type { ModelRegistry } from "../models/model-registry.js";
import type { RouterSettings } from "../config/router-settings.js";
import type { DeploymentHealth } from "../proxy/deployment-health.js";
import type { InboundApi } from "../proxy/inbound/inbound-api.js";
import { MESSAGES, MESSAGES_COUNT_TOKENS } from "../proxy/inbound/messages.js";
import { CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS } from "../proxy/inbound/openai.js";
import { RESPONSES } from "../proxy/inbound/responses.js";
import { ClientGone, type Provider, readsWhole } from "../proxy/provider.js";
import type { DeploymentLoad } from "../proxy/deployment-load.js";
import type { RoutingStrategy } from "../proxy/routing-strategy.js";
import { type AnswerWriter, type DirectWriter, Relay, type RelayAnswer, type RelayRecord } from "../proxy/relay.js";
import { duplicateTopLevelKey } from "../proxy/request-shape.js";
import type { SpendLogRow } from "../store/spend-log-row.js";
import { type FinishedRequest, spendLogRow } from "../spendlogs/request-row.js";
import type { AccessLog, RequestRecord } from "./access-log.js";
import type { CallerAuth, DigestHolder } from "./auth-middleware.js";
import { classifyError, isClientAbort, serializeError, writeJson } from "./error-mapping.js";
import { loggablePath, pathOf } from "./loggable-path.js";
import { parseJsonBody, readJsonBodyThen } from "./request-body.js";
import { newRequestId } from "./request-id.js";

/**
 * The model APIs — OpenAI's chat completions, completions, embeddings, models and Responses API, Anthropic's
 * Messages API and its token count — served at the node:http level in front of the express app: the hot path of a
 * gateway, where a framework's per-request routing and middleware cost more than the gateway's own work
 * (docs/performance.md). Everything else — admin API, health, metrics, OpenAPI — is the express app's.
 *
 * This module is HTTP only: it routes, authenticates (before reading the body), reads the body, writes the answer
 * and the errors in the route's shape, and logs. What happens to a request in between is the relay's
 * (proxy/relay.ts), the same for every API shape. The paths are exact, as the SDKs send them: `/v1/...` and the
 * unprefixed forms LiteLLM also serves.
 */
export interface ApiRouteDeps {
  auth: CallerAuth;
  accessLog: AccessLog;
  logger: Logger;
  models: ModelRegistry;
  providers: Record<ProviderName, Provider>;
  routing: RouterSettings;
  deploymentHealth: DeploymentHealth;
  deploymentLoad: DeploymentLoad;
  routingStrategy: RoutingStrategy;
  limits: LimitEnforcer;
  defaultMaxTokens: number;
  maxRequestBodyBytes: number;
  /** Upstream refused the gateway's own credentials: the operator must hear of it (the client gets a 502). */
  onUpstreamAuthFailure: (deployment: ModelDeployment, status: number) => void;
  /** Where each finished request's spend log row goes (null: spend_logs.logging off). */
  spendLogs: { record(row: SpendLogRow): void } | null;
  replicaId: string;
  /** `server.straight_path`: may a request that qualifies be relayed straight (docs/performance.md)? */
  straightPath: boolean;
  /** Counts each upstream attempt by the way the relay made it (a metric). */
  countAttempt: (way: "straight" | "general") => void;
}

type RouteKind = "relay" | "list-models" | "get-model";

interface Route {
  /** The pattern logged and used as a metric label. */
  readonly pattern: string;
  readonly kind: RouteKind;
  /** The API shape a relayed route speaks (list and get speak OpenAI's). */
  readonly api: InboundApi;
  readonly recorder: RouteRecorder | undefined;
}

const RELAYED: ReadonlyArray<[string, InboundApi]> = [
  ["/v1/chat/completions", CHAT_COMPLETIONS],
  ["/chat/completions", CHAT_COMPLETIONS],
  ["/v1/completions", COMPLETIONS],
  ["/completions", COMPLETIONS],
  ["/v1/embeddings", EMBEDDINGS],
  ["/embeddings", EMBEDDINGS],
  ["/v1/responses", RESPONSES],
  ["/responses", RESPONSES],
  ["/v1/messages", MESSAGES],
  ["/v1/messages/count_tokens", MESSAGES_COUNT_TOKENS],
];

/** Every method and path these routes serve (OpenAPI patterns), for the OpenAPI document's test. */
export const API_ROUTES: ReadonlyArray<{ method: "get" | "post"; path: string }> = [
  ...RELAYED.map(([path]) => ({ method: "post" as const, path })),
  ...["/v1/models", "/models", "/v1/models/{id}", "/models/{id}"].map((path) => ({ method: "get" as const, path })),
];

export class ApiRoutes {
  /** "METHOD /path" → route: one map look-up per request, no pattern matching. */
  private readonly exact = new Map<string, Route>();
  private readonly getModel: Route;
  private readonly getModelUnprefixed: Route;
  private readonly relayer: Relay;

  constructor(private readonly deps: ApiRouteDeps) {
    const route = (pattern: string, kind: RouteKind, api: InboundApi): Route => ({ pattern, kind, api, recorder: deps.accessLog.recorder(pattern) });
    for (const [path, api] of RELAYED) this.exact.set(`POST ${path}`, route(path, "relay", api));
    for (const path of ["/v1/models", "/models"]) this.exact.set(`GET ${path}`, route(path, "list-models", CHAT_COMPLETIONS));
    this.getModel = route("/v1/models/:id", "get-model", CHAT_COMPLETIONS);
    this.getModelUnprefixed = route("/models/:id", "get-model", CHAT_COMPLETIONS);
    this.relayer = new Relay({
      models: deps.models,
      providers: deps.providers,
      routing: deps.routing,
      health: deps.deploymentHealth,
      load: deps.deploymentLoad,
      strategy: deps.routingStrategy,
      limits: deps.limits,
      defaultMaxTokens: deps.defaultMaxTokens,
      logsSpend: deps.spendLogs !== null,
      onUpstreamAuthFailure: deps.onUpstreamAuthFailure,
      straight: deps.straightPath,
      countAttempt: deps.countAttempt,
    });
  }

  /** Serves the request if it is one of these routes; false leaves it to the express app. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = pathOf(req.url);
    let route = this.exact.get(`${req.method} ${path}`);
    if (route === undefined && req.method === "GET") {
      if (path.startsWith("/v1/models/") && path.length > 11 && path.indexOf("/", 11) === -1) route = this.getModel;
      else if (path.startsWith("/models/") && path.length > 8 && path.indexOf("/", 8) === -1) route = this.getModelUnprefixed;
    }
    if (route === undefined) return false;
    const exchange = new Exchange(this, req, res, route);
    // x-request-id goes into each answer's head as it is written (Exchange.echoRequestId, relayAnswer).
    this.deps.accessLog.identify(req, exchange);
    exchange.startedWall = Date.now();
    (res as Tagged)[EXCHANGE] = exchange;
    res.on("close", onResponseClose); // a response closes once: `once` would only add a wrapper per request
    this.serve(exchange);
    return true;
  }

  /**
   * Authenticates, then serves the route. Written with callbacks rather than as an async function: in the usual
   * case (the key in L1, the body in the first packet) a request then takes no promise until the relay's own,
   * and each one less was worth more than its own cost (docs/performance.md, "The straight path").
   */
  private serve(x: Exchange): void {
    const caller = this.deps.auth.virtualKey(x.req.headers, x.req.socket as DigestHolder);
    if (caller instanceof Promise)
      caller
        .then(
          (auth) => this.authenticated(x, auth),
          (err) => this.fail(x, err),
        )
        .catch(onServeFailure);
    else this.authenticated(x, caller);
  }

  private authenticated(x: Exchange, auth: AuthResult): void {
    x.auth = auth;
    try {
      if (x.route.kind === "relay") this.relayAndLog(x);
      else if (x.route.kind === "list-models") this.listModels(x);
      else this.retrieveModel(x);
    } catch (err) {
      this.failSafely(x, err);
    }
  }

  /** fail(), guarded against a bug in the error path itself: nothing may escape into Node's request handler. */
  private failSafely(x: Exchange, err: unknown): void {
    try {
      this.fail(x, err);
    } catch (bug) {
      onServeFailure(bug);
    }
  }

  private listModels(x: Exchange): void {
    const { record, team, user = null } = x.auth!;
    const data = [];
    for (const id of this.deps.models.modelNames()) if (callerAllowsModel(record, team, id, user)) data.push({ id, object: "model", created: 0, owned_by: "gatehouse" });
    x.echoRequestId();
    writeJson(x.res, 200, { object: "list", data });
  }

  // The OpenAI SDK's models.retrieve(id). A model the key may not use is "not found", as OpenAI answers.
  private retrieveModel(x: Exchange): void {
    const path = pathOf(x.req.url);
    const id = decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
    if (!this.deps.models.modelNames().has(id) || !callerAllowsModel(x.auth!.record, x.auth!.team, id, x.auth!.user))
      throw new NotFoundError(`The model '${id}' does not exist or this key may not use it.`, { code: "model_not_found", param: "model" });
    x.echoRequestId();
    writeJson(x.res, 200, { id, object: "model", created: 0, owned_by: "gatehouse" });
  }

  /**
   * A relayed request's spend log row is written once both have happened: the response closed, and the relay
   * finished (a client that leaves mid-answer closes the response first; its charge is known only after).
   */
  private relayAndLog(x: Exchange): void {
    x.relaying = true;
    // Authenticated: only now is the body read and parsed.
    readJsonBodyThen(
      x.req,
      this.deps.maxRequestBodyBytes,
      (raw) => this.relayBody(x, raw),
      (err) => this.relayOver(x, err),
    );
  }

  private relayBody(x: Exchange, raw: Buffer): void {
    let relayed: Promise<void>;
    try {
      const body = parseJsonBody(raw);
      if (body === null || typeof body !== "object" || Array.isArray(body)) throw new BadRequestError("request body must be a JSON object (Content-Type: application/json)");
      const duplicate = duplicateTopLevelKey(raw, Object.keys(body).length);
      if (duplicate !== null) throw new BadRequestError(`the field '${duplicate}' appears more than once in the request body`, { code: "duplicate_field", param: duplicate });
      const beta = x.req.headers["anthropic-beta"];
      relayed = this.relayer.relay(x, x.route.api, { raw, body: body as Record<string, unknown>, anthropicBeta: typeof beta === "string" ? beta : undefined }, x);
    } catch (err) {
      this.relayOver(x, err);
      return;
    }
    relayed.then(
      () => this.relayOver(x, RELAYED_WHOLE),
      (err) => this.relayOver(x, err),
    );
  }

  /** The relay finished: the spend row if the response has closed too, then the failure told, if it failed. */
  private relayOver(x: Exchange, err: unknown): void {
    x.relaying = false;
    try {
      if (x.endedAt !== 0) this.logSpend(x);
    } catch (bug) {
      onServeFailure(bug);
    }
    if (err !== RELAYED_WHOLE) this.failSafely(x, err);
  }

  private logSpend(x: Exchange): void {
    // Every request of a key that named a model this gateway serves: served, refused by a limit, or failed
    // upstream (docs/spend-logs.md).
    if (this.deps.spendLogs !== null && x.auth !== undefined && x.model !== undefined) this.deps.spendLogs.record(spendLogRow(x, this.deps.replicaId, newRequestId));
  }

  /** Every failure of a request, told to the client once, in the route's shape. */
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
    if (res.headersSent) {
      endBrokenStream(x, err);
      return;
    }
    const told = error ?? new InternalError();
    x.restoreHead();
    for (const name in told.headers) res.setHeader(name, told.headers[name]!);
    writeJson(res, told.status, x.route.api.errorBody(told) as object);
  }

  /** The request is over, answered or not. */
  closed(x: Exchange): void {
    if (x.abort !== undefined && !x.res.writableFinished) x.abort.abort();
    if (x.answeredAt !== 0 && x.upstreamStartedAt !== 0) x.ownSeconds = (x.upstreamStartedAt - x.startedAt + x.answeredAt - x.upstreamEndedAt) / 1000;
    this.deps.accessLog.end(x.req, x.res, x.route.pattern, x.route.recorder, x);
    x.endedAt = performance.now();
    if (x.route.kind === "relay" && !x.relaying) this.logSpend(x);
  }
}

/** One request on these routes: what the access log and the relay record, the answer's writer, the upstream call to abort. */
class Exchange implements RequestRecord, RelayRecord, AnswerWriter, DirectWriter, FinishedRequest {
  requestId = "";
  startedAt = 0;
  auth: AuthResult | undefined = undefined;
  model: string | undefined = undefined;
  /** performance.now() when the first upstream call was made (0: none was). */
  upstreamStartedAt = 0;
  /** performance.now() when the answer's last upstream byte was read, and when its last byte was handed to the socket. */
  upstreamEndedAt = 0;
  answeredAt = 0;
  ownSeconds: number | undefined = undefined;
  /**
   * Made with the exchange, so that a client gone at any point aborts it: one that leaves while its key or its model
   * is still being read must not find, later, an upstream call paused on a socket that will never drain.
   */
  abort: ClientGone | undefined = new ClientGone();
  // For the spend log row.
  startedWall = 0;
  /** performance.now() when the response closed; 0 while it is open. */
  endedAt = 0;
  /** The relay (admission, upstream call, settle) has not finished yet. */
  relaying = false;
  deployment: ModelDeployment | undefined = undefined;
  stream = false;
  usage: TokenCount | undefined = undefined;
  cost = 0;
  errorCode: string | undefined = undefined;
  requestMetadata: unknown = undefined;
  answering = false;
  attempts: RelayRecord["attempts"] = NO_ATTEMPTS;
  /** Writes are being held for the rest of this loop turn (holdWrites). */
  corked = false;
  /** A stream's head is written but not yet handed to the socket: it goes with the first frames, or at the turn's end. */
  headPending = false;
  /**
   * Headers were set on the response one by one (the relay's, through setHeader): the answer's head is then written
   * the same way, after them. Otherwise, the usual case, it is written whole by one `writeHead` (writeAnswerHead).
   */
  headed = false;
  /** The answer's content type and routing headers, from when its writing began (an error told instead keeps them). */
  contentType = "";
  routing: readonly string[] = NO_HEADERS;
  /** A straight attempt's answer is written by this exchange too (DirectWriter below). */
  readonly direct: DirectWriter = this;
  /** A JSON answer being written straight: its bytes, held for one write. */
  private jsonOut: JsonOut | undefined = undefined;

  constructor(
    readonly owner: ApiRoutes,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: Route,
  ) {}

  setHeader(name: string, value: string): void {
    if (!this.headed) this.echoRequestId();
    this.res.setHeader(name, value);
  }

  /** x-request-id, set on the response first of its headers: every answer and every error carries it. */
  echoRequestId(): void {
    this.headed = true;
    this.res.setHeader("x-request-id", this.requestId);
  }

  /**
   * Before an error is told instead of the answer (its head not written): the headers the answer had so far, as they
   * would have been set — the request id, and the routing headers and content type once the answer's writing began.
   * Setting a header again keeps its place, so this is the same whether they were set before or not.
   */
  restoreHead(): void {
    if (!this.headed) this.echoRequestId();
    if (this.contentType !== "") this.setAnswerHeaders(NO_HEADERS);
  }

  /** The answer's own headers one by one, after those already set: the routing headers, the content type, `more`. */
  setAnswerHeaders(more: readonly string[]): void {
    const { res, routing } = this;
    for (let i = 0; i < routing.length; i += 2) res.setHeader(routing[i]!, routing[i + 1]!);
    res.setHeader("content-type", this.contentType);
    for (let i = 0; i < more.length; i += 2) res.setHeader(more[i]!, more[i + 1]!);
  }

  send(answer: RelayAnswer): Promise<void> {
    return relayAnswer(this, answer);
  }

  // DirectWriter: the same answer as send() writes, from a straight attempt's calls (the same heads, one write for a
  // JSON answer, a stream's writes held for the loop turn).

  begin(status: number, contentType: string, stream: boolean, routing: readonly string[]): void {
    this.res.statusCode = status;
    this.contentType = contentType;
    this.routing = routing;
    if (!stream) {
      this.jsonOut = new JsonOut(this, status);
      return;
    }
    writeAnswerHead(this, status, STREAM_HEAD);
    // The head leaves with the first frames written in this loop turn (Node puts it in front of the first write),
    // or alone when the turn ends without any (releaseWrites): a stream's head is never held past the turn its first
    // chunk came in, and the usual first write is one write to the socket fewer.
    this.headPending = true;
    holdWrites(this);
  }

  write(bytes: Uint8Array | string): boolean {
    return this.jsonOut !== undefined ? this.jsonOut.put(bytes) : sendFrames(this, bytes);
  }

  onDrain(resume: () => void): void {
    this.res.once("drain", resume);
  }

  end(last: string): void {
    if (last.length !== 0) this.write(last);
    if (this.jsonOut !== undefined) this.jsonOut.end();
    else this.res.end();
  }

  broken(err: unknown): boolean {
    if (!this.res.headersSent) return false;
    endBrokenStream(this, err);
    return true;
  }

  // For the spend log row (spendlogs/request-row.ts).
  get clientRequestId(): string | string[] | undefined {
    return this.req.headers["x-request-id"];
  }

  get status(): number {
    return this.res.statusCode;
  }

  get answered(): boolean {
    return this.res.writableFinished;
  }
}

const NO_ATTEMPTS: RelayRecord["attempts"] = Object.freeze([]);
/** relayOver's "no failure": the relay ended without one. */
const RELAYED_WHOLE = Symbol("relayed whole");
const NO_HEADERS: readonly string[] = Object.freeze([]);
const EXCHANGE = Symbol("exchange");
type Tagged = { [EXCHANGE]?: Exchange };

// A module function, not a closure per request: `this` is the response it listens on.
function onResponseClose(this: ServerResponse): void {
  const x = (this as Tagged)[EXCHANGE]!;
  x.owner.closed(x);
}

// serve() and the relay's end catch everything; this only guards against a bug in the error path itself.
function onServeFailure(err: unknown): void {
  process.emitWarning(`unexpected failure on a model API route: ${(err as Error)?.message ?? String(err)}`);
}

// A JSON answer up to this size is sent in one write with its Content-Length: one system call instead of a chunked
// write per upstream chunk plus the terminating chunk. Larger answers are relayed as they arrive.
const ONE_WRITE_MAX_BYTES = 1024 * 1024;

/**
 * Writes an answer to the client through the same calls a straight attempt makes (DirectWriter): a JSON answer in one
 * write (a short one taken whole from upstream), a stream's frames as they come (metered, translated).
 */
async function relayAnswer(x: Exchange, answer: RelayAnswer): Promise<void> {
  x.begin(answer.status, answer.contentType, answer.stream, answer.routing ?? NO_HEADERS);
  const signal = x.abort!;
  const sink: Sink = (bytes) => (x.write(bytes) ? undefined : waitForDrain(x.res, signal));
  const { body } = answer;
  try {
    // A short upstream answer is taken whole, in one promise, rather than awaited chunk by chunk (a `for await`
    // over the array would await each chunk again).
    const whole = !answer.stream && readsWhole(body) ? await body.whole(ONE_WRITE_MAX_BYTES) : null;
    if (signal.aborted) return;
    if (whole !== null) {
      for (const chunk of whole) {
        const full = passOn(answer, chunk, sink);
        if (full) await full;
      }
    } else if (!(await passEach(body, answer, sink, signal))) return;
    await closeAnswer(x, answer, sink, () => x.end(""));
  } catch (err) {
    answerFailed(x, err);
  }
}

const STREAM_HEAD: readonly string[] = ["cache-control", "no-cache", "x-accel-buffering", "no"]; // nginx in front must not buffer the stream

/** Where an answer's bytes go: a promise only when the socket is full (wait for it before the next bytes). */
type Sink = (bytes: Uint8Array | string) => Promise<void> | undefined;

/** One upstream chunk, as the answer's `pass` makes it, to the sink (nothing when it makes nothing yet). */
function passOn(answer: RelayAnswer, chunk: Uint8Array | string, sink: Sink): Promise<void> | undefined {
  const bytes = answer.pass ? answer.pass(chunk) : chunk;
  return bytes.length !== 0 ? sink(bytes) : undefined;
}

/** Each chunk of an upstream body as it comes, through `passOn`; false when the client left before the end. */
async function passEach(body: RelayAnswer["body"], answer: RelayAnswer, sink: Sink, signal: ClientGone): Promise<boolean> {
  for await (const chunk of body) {
    if (signal.aborted) return false;
    const full = passOn(answer, chunk, sink);
    if (full) await full;
  }
  return true;
}

/**
 * After the upstream's last byte: the answer's closing bytes, the charge settled (before the end reaches the client,
 * so its next request is admitted against it: docs/limits.md, "Settle"), then the end.
 */
async function closeAnswer(x: Exchange, answer: RelayAnswer, sink: Sink, end: () => void): Promise<void> {
  x.upstreamEndedAt = performance.now();
  const last = answer.end?.() ?? "";
  if (answer.beforeEnd) await answer.beforeEnd();
  const full = last.length !== 0 ? sink(last) : undefined;
  if (full) await full;
  end();
  x.answeredAt = performance.now();
}

/** Hands bytes to the socket, held for the loop turn; false when it is now full. */
function sendFrames(x: Exchange, out: Uint8Array | string): boolean {
  x.headPending = false; // the head goes in front of these bytes
  holdWrites(x);
  return x.res.write(out);
}

/** An answer that failed: quietly when the client left, as an error answer when nothing was sent, in-band otherwise. */
function answerFailed(x: Exchange, err: unknown): void {
  if (x.abort!.aborted) return;
  if (!x.res.headersSent) throw err; // a JSON answer that failed before a byte was sent: told as an error answer
  endBrokenStream(x, err);
}

/**
 * A JSON answer's bytes: held, to be sent in one write with its Content-Length; past ONE_WRITE_MAX_BYTES, what is
 * held goes out and the rest is relayed as it comes (waiting for the socket to drain).
 */
class JsonOut {
  private held: Array<Uint8Array | string> | undefined = [];
  private heldBytes = 0;

  constructor(
    private readonly x: Exchange,
    private readonly status: number,
  ) {}

  /** Takes the next bytes; false when they went to a socket that is now full. */
  put(out: Uint8Array | string): boolean {
    const { held, x } = this;
    if (held === undefined) return sendFrames(x, out);
    held.push(out);
    this.heldBytes += typeof out === "string" ? Buffer.byteLength(out) : out.byteLength;
    if (this.heldBytes <= ONE_WRITE_MAX_BYTES) return true;
    // Too large to hold: what is held goes out now, the rest as it comes.
    writeAnswerHead(x, this.status, NO_HEADERS);
    let room = true;
    for (const part of held) room = x.res.write(part);
    this.held = undefined;
    return room;
  }

  end(): void {
    const { held, x } = this;
    if (held === undefined) {
      x.res.end();
      return;
    }
    const body = held.length === 1 ? held[0]! : Buffer.concat(held.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));
    writeAnswerHead(x, this.status, ["content-length", String(this.heldBytes)]);
    x.res.end(body);
  }
}

/**
 * The answer's head: x-request-id, the routing headers, the content type, then `more`. Written by one `writeHead`
 * with a flat list when nothing was set on the response before — Node then builds the head from the list, without
 * its per-header table (a lower-cased name and an entry per header, a `for in` over them) — and through setHeader,
 * after the headers already set, otherwise. The bytes sent are the same either way (test/answer-heads.test.ts).
 */
function writeAnswerHead(x: Exchange, status: number, more: readonly string[]): void {
  const { res, routing } = x;
  if (x.headed) {
    x.setAnswerHeaders(more);
    res.statusCode = status;
    return;
  }
  const head: string[] = ["x-request-id", x.requestId];
  for (let i = 0; i < routing.length; i++) head.push(routing[i]!);
  head.push("content-type", x.contentType);
  for (let i = 0; i < more.length; i++) head.push(more[i]!);
  res.writeHead(status, head);
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
  if (x.headPending && !x.res.writableEnded) x.res.flushHeaders();
  x.headPending = false;
  x.res.uncork();
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

/** After the headers are out, an error can only be told in-band: the route's error event, then the end. */
function endBrokenStream(x: Exchange, err: unknown): void {
  const { res } = x;
  const error = err instanceof GatewayError ? err : new UpstreamError("the upstream stream failed", { code: "upstream_stream_failed" });
  if (x.contentType.startsWith("text/event-stream")) {
    x.errorCode = error.code;
    res.end(x.route.api.streamError(error));
  } else {
    res.destroy();
  }
}
