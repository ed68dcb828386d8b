import { ERROR_CODES, type ErrorCode, type ErrorCodeRow, type RelayedCode } from "./error-codes.js";

/**
 * The errors the HTTP layer knows how to render. Every error a client sees is `{"error":{"message","type","param","code"}}`;
 * its code is a row of the table in error-codes.ts, which gives the status and type it is sent with.
 *
 * One argument order for every class: `(message, { code, param, … })`. Named, because a code and a param are both
 * strings and two orders of them once lived side by side. A class with a generic code (bad_request, not_found, …)
 * sends it when no code is given; a class takes only the codes the table sends with its status and type.
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null };
}

type Row<C extends ErrorCode> = (typeof ERROR_CODES)[C];
/** Each status and type a code is sent with: its row's own, and its `alsoSentAs`. */
type WaysOf<C extends ErrorCode> = Row<C> | (Row<C> extends { alsoSentAs: infer A } ? A : never);

/** The codes the table sends with `status` and `type`: what a class for that status and type may be given. */
export type CodeSentAs<S extends number, T extends string> = {
  [C in ErrorCode]: [Extract<WaysOf<C>, { status: S; type: T }>] extends [never] ? never : C;
}[ErrorCode];

/** The dependencies behind a circuit breaker (faults/breaker.ts); each has its `<name>_unavailable` code. */
export type Dependency = "postgres" | "redis";

interface Sent {
  status: number;
  type: string;
  code: string;
  param?: string | null;
  headers?: Record<string, string>;
}

/** `code` as its table row sends it with `status` (the row's own way or its `alsoSentAs`). */
function sentAs(code: ErrorCode, status: number): Sent {
  const row: ErrorCodeRow = ERROR_CODES[code];
  if (row.status === status) return { status, type: row.type, code };
  if (row.alsoSentAs?.status === status) return { status, type: row.alsoSentAs.type, code };
  // The classes' types make this unreachable; a cast around them would land here rather than send a wrong status.
  throw new Error(`the error code ${code} is not sent with status ${status} (src/errors/error-codes.ts)`);
}

/** `code` with the one status its row gives. */
function sentAsItsRowSays(code: ErrorCode): Sent {
  const { status } = ERROR_CODES[code] as ErrorCodeRow;
  if (typeof status !== "number") throw new Error(`the error code ${code} has no status of its own (src/errors/error-codes.ts)`);
  return sentAs(code, status);
}

export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  /** Only the classes below make one: each takes status and type from the table, or from what upstream said. */
  protected constructor(message: string, sent: Sent) {
    super(message);
    this.status = sent.status;
    this.type = sent.type;
    this.code = sent.code;
    this.param = sent.param ?? null;
    this.headers = sent.headers ?? {};
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A refusal's code (its class's generic one when not given) and the field of the request it is about. */
export interface CodeAndParam<C extends ErrorCode> {
  code?: C;
  param?: string | null;
}

export class BadRequestError extends GatewayError {
  constructor(message: string, { code = "bad_request", param }: CodeAndParam<CodeSentAs<400, "invalid_request_error">> = {}) {
    super(message, { ...sentAs(code, 400), param });
  }
}

export class AuthenticationError extends GatewayError {
  constructor(message: string, { code = "invalid_api_key", param }: CodeAndParam<CodeSentAs<401, "authentication_error">> = {}) {
    super(message, { ...sentAs(code, 401), param });
  }
}

export class PermissionError extends GatewayError {
  constructor(message: string, { code = "permission_denied", param }: CodeAndParam<CodeSentAs<403, "permission_error">> = {}) {
    super(message, { ...sentAs(code, 403), param });
  }
}

export class NotFoundError extends GatewayError {
  constructor(message: string, { code = "not_found", param }: CodeAndParam<CodeSentAs<404, "not_found_error">> = {}) {
    super(message, { ...sentAs(code, 404), param });
  }
}

export class ConflictError extends GatewayError {
  constructor(message: string, { code = "conflict", param }: CodeAndParam<CodeSentAs<409, "invalid_request_error">> = {}) {
    super(message, { ...sentAs(code, 409), param });
  }
}

export class PayloadTooLargeError extends GatewayError {
  constructor(limitBytes: number) {
    super(`request body is larger than the limit of ${limitBytes} bytes`, sentAsItsRowSays("request_too_large"));
  }
}

/** A library (body-parser, express's file sending) refused the request with a 4xx of its own: that status, our message. */
export class LibraryRefusalError extends GatewayError {
  constructor(status: number) {
    if (!(status >= 400 && status < 500)) throw new Error(`a library's refusal is a 4xx, not ${status}`);
    super("the request is not valid", { status, type: ERROR_CODES.invalid_request.type, code: "invalid_request" });
  }
}

export class RateLimitError extends GatewayError {
  constructor(
    message: string,
    { code = "rate_limit_exceeded", retryAfterSeconds, headers = {} }: { code?: CodeSentAs<429, "rate_limit_error">; retryAfterSeconds: number; headers?: Record<string, string> },
  ) {
    super(message, { ...sentAs(code, 429), headers: { ...headers, "retry-after": String(retryAfterSeconds) } });
  }
}

/**
 * A deployment at one of its own limits (rpm, tpm, calls in flight) for the whole cluster: the request goes to the
 * model's next deployment (proxy/attempts.ts). Told to the client, as a 429, only when no deployment had room.
 */
export class DeploymentAtCapacityError extends RateLimitError {
  constructor(
    readonly deploymentId: string,
    readonly limit: "rpm" | "tpm" | "parallel",
    readonly retryAfterMs: number,
  ) {
    super(`Deployment ${deploymentId} is at its ${limit === "parallel" ? "max_parallel_requests" : limit} limit.`, {
      code: "deployment_at_capacity",
      retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
    });
  }
}

/**
 * LiteLLM's shape for a level over its budget: 400, type "budget_exceeded", its message wording, naming the
 * level that refused (`who`: `Key=…`, `TeamMember=…`, `User=…`, `Team=…`).
 */
export class BudgetExceededError extends GatewayError {
  constructor(spend: number, maxBudget: number, who: string) {
    super(`Budget has been exceeded! ${who} Current cost: ${spend}, Max budget: ${maxBudget}`, sentAsItsRowSays("budget_exceeded"));
  }
}

export class ServiceUnavailableError extends GatewayError {
  constructor(message: string, { code = "service_unavailable", retryAfterSeconds = 1 }: { code?: CodeSentAs<503, "service_unavailable_error">; retryAfterSeconds?: number } = {}) {
    super(message, { ...sentAs(code, 503), headers: { "retry-after": String(retryAfterSeconds) } });
  }
}

/** The codes of the upstream's failures that are the gateway's own (each with its status in the table). */
export type UpstreamCode = Extract<ErrorCode, `upstream_${string}`>;

/**
 * What an upstream provider answered, passed on: its status, type and code are the provider's, not the table's,
 * so each names the RELAYED_CODES row (error-codes.ts) that describes it.
 */
export interface RelayedAnswer {
  relayed: RelayedCode;
  status: number;
  type: string;
  code: string;
  param?: string | null;
  headers?: Record<string, string>;
}

export class UpstreamError extends GatewayError {
  constructor(message: string, how: { code: UpstreamCode; headers?: Record<string, string> } | RelayedAnswer) {
    super(message, "relayed" in how ? how : { ...sentAsItsRowSays(how.code), headers: how.headers });
  }
}

/** A dependency (Postgres, Redis) cannot be asked right now: its breaker is open, or it did not answer in time. */
export class DependencyUnavailableError extends ServiceUnavailableError {
  constructor(
    readonly dependency: Dependency,
    retryAfterSeconds: number,
    override readonly cause?: unknown,
  ) {
    super(`${dependency} is unavailable right now; retry shortly`, { code: `${dependency}_unavailable`, retryAfterSeconds });
  }
}

/** The connection died during COMMIT and whether the change landed could not be confirmed. */
export class CommitOutcomeUnknownError extends DependencyUnavailableError {
  constructor(cause: unknown) {
    super("postgres", 1, cause);
    this.message = "the database connection failed while committing and the outcome could not be confirmed; retry (with the same Idempotency-Key to be safe)";
  }
}

/**
 * A transaction that kept meeting concurrent ones (Postgres broke a deadlock, or refused to serialise it) until its
 * retry deadline: it rolled back each time, so nothing was written and the caller may simply retry.
 */
export class ChangeContendedError extends ServiceUnavailableError {
  constructor(override readonly cause: unknown) {
    super("the change met concurrent changes of the same records and was not applied; retry", { code: "change_contended", retryAfterSeconds: 1 });
  }
}

/** A bug of ours: the client is told only that, and the log has the rest. */
export class InternalError extends GatewayError {
  constructor() {
    super("internal error", sentAsItsRowSays("internal_error"));
  }
}
