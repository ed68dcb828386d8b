/**
 * The one registry of errors the HTTP layer knows how to render (as Fastify does in its lib/errors.js).
 * Every error a client sees is `{"error":{"message","type","param","code"}}` with the status below.
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null };
}

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export class BadRequestError extends GatewayError {
  constructor(message: string, param: string | null = null, code = "bad_request") {
    super(400, "invalid_request_error", code, message, param);
  }
}

export class AuthenticationError extends GatewayError {
  constructor(message: string, code = "invalid_api_key") {
    super(401, "authentication_error", code, message);
  }
}

export class PermissionError extends GatewayError {
  constructor(message: string, code = "permission_denied", param: string | null = null) {
    super(403, "permission_error", code, message, param);
  }
}

export class NotFoundError extends GatewayError {
  constructor(message: string, param: string | null = null, code = "not_found") {
    super(404, "not_found_error", code, message, param);
  }
}

export class ConflictError extends GatewayError {
  constructor(message: string, code = "conflict", param: string | null = null) {
    super(409, "invalid_request_error", code, message, param);
  }
}

export class PayloadTooLargeError extends GatewayError {
  constructor(limitBytes: number) {
    super(413, "invalid_request_error", "request_too_large", `request body is larger than the limit of ${limitBytes} bytes`);
  }
}

export class RateLimitError extends GatewayError {
  constructor(message: string, retryAfterSeconds: number, code = "rate_limit_exceeded", headers: Record<string, string> = {}) {
    super(429, "rate_limit_error", code, message, null, { ...headers, "retry-after": String(retryAfterSeconds) });
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
    super(
      `Deployment ${deploymentId} is at its ${limit === "parallel" ? "max_parallel_requests" : limit} limit.`,
      Math.max(1, Math.ceil(retryAfterMs / 1000)),
      "deployment_at_capacity",
    );
  }
}

/**
 * LiteLLM's shape for a level over its budget: 400, type "budget_exceeded", its message wording, naming the
 * level that refused (`who`: `Key=…`, `TeamMember=…`, `User=…`, `Team=…`).
 */
export class BudgetExceededError extends GatewayError {
  constructor(spend: number, maxBudget: number, who: string) {
    super(400, "budget_exceeded", "budget_exceeded", `Budget has been exceeded! ${who} Current cost: ${spend}, Max budget: ${maxBudget}`);
  }
}

export class ServiceUnavailableError extends GatewayError {
  constructor(message: string, retryAfterSeconds = 1, code = "service_unavailable") {
    super(503, "service_unavailable_error", code, message, null, { "retry-after": String(retryAfterSeconds) });
  }
}

export class UpstreamError extends GatewayError {
  constructor(status: number, message: string, code: string, type = "upstream_error", headers: Record<string, string> = {}) {
    super(status, type, code, message, null, headers);
  }
}

/** A dependency (Postgres, Redis) cannot be asked right now: its breaker is open, or it did not answer in time. */
export class DependencyUnavailableError extends ServiceUnavailableError {
  constructor(
    readonly dependency: string,
    retryAfterSeconds: number,
    override readonly cause?: unknown,
  ) {
    super(`${dependency} is unavailable right now; retry shortly`, retryAfterSeconds, `${dependency}_unavailable`);
  }
}

/** The connection died during COMMIT and whether the change landed could not be confirmed. */
export class CommitOutcomeUnknownError extends DependencyUnavailableError {
  constructor(cause: unknown) {
    super("postgres", 1, cause);
    this.message = "the database connection failed while committing and the outcome could not be confirmed; retry (with the same Idempotency-Key to be safe)";
  }
}

export function internalErrorBody(): OpenAIErrorBody {
  return { error: { message: "internal error", type: "internal_error", param: null, code: "internal_error" } };
}
