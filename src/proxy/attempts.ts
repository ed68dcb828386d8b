import type { FailureKind, RouterSettings } from "../config/router-settings.js";
import type { ModelDeployment } from "../config/settings.js";
import { type DeploymentAtCapacityError, type GatewayError, RateLimitError, ServiceUnavailableError, UpstreamError } from "../errors/errors.js";
import type { DeploymentHealth } from "./deployment-health.js";

/**
 * The attempts of one client request (docs/routing.md): its model's deployments first (the router's order,
 * skipping those cooling down), retried within the model while retries are left for the kind of failure, then
 * each fallback model in turn. One budget for the whole request: `num_retries` retries in all (or the retry
 * policy's number for the failure's kind), plus one attempt for each fallback model — never multiplied by model
 * or by deployment. Every attempt goes through the same admission as the first (relay.ts), priced at its own
 * deployment.
 */

/** Failures worth another attempt unless the retry policy says otherwise (LiteLLM retries these). */
const RETRIED: ReadonlySet<FailureKind> = new Set(["rate_limit", "timeout", "server_error", "connection"]);

/** What kind of failure an upstream error is; null for anything else (a limit, the client leaving, a bug). */
export function failureKindOf(err: unknown): FailureKind | null {
  if (!(err instanceof UpstreamError)) return null;
  const { status, code } = err;
  if (code === "upstream_unreachable") return "connection";
  if (code === "upstream_auth_failed") return "auth";
  if (status === 504 || code === "upstream_timeout" || code === "upstream_connect_timeout") return "timeout";
  if (status === 429) return "rate_limit";
  if (code === "content_filter" || code === "content_policy_violation") return "content_policy";
  if (code === "context_length_exceeded" || /context (length|window)|prompt is too long|maximum context/i.test(err.message)) return "context_window";
  if (status >= 500) return "server_error";
  return "bad_request";
}

/** What the client asked of this request's routing (LiteLLM's request-level fields), already checked. */
export interface RequestRouting {
  numRetries?: number | undefined;
  fallbacks?: readonly string[] | undefined;
}

export class AttemptPlan {
  readonly attempts: Array<{ deployment: string; failure: string }> = [];
  /** Deployments that failed in this request; made on the first failure (most requests have none). */
  private failedHere: Set<string> | undefined;
  private retriesUsed = 0;
  private fallbacksUsed = 0;
  private lastKind: FailureKind | null = null;
  private lastError: unknown;
  /** Deployments found at one of their own limits in this request (id → ms until room); made on the first. */
  private full: Map<string, number> | undefined;
  /** The last attempt was refused by its deployment's limits: the next goes elsewhere without using a retry. */
  private lastWasFull = false;
  /** The model being tried now (the requested one, then fallbacks), and its deployments. */
  private current: string;
  private deployments: ModelDeployment[];
  private fallbackChain: readonly string[] | null = null;

  constructor(
    model: string,
    deployments: ModelDeployment[],
    private readonly settings: RouterSettings,
    private readonly health: DeploymentHealth,
    /** May the caller use this model? A fallback the caller may not use is skipped. */
    private readonly allowed: (model: string) => boolean,
    private readonly deploymentsOf: (model: string) => Promise<ModelDeployment[] | undefined>,
    private readonly asked: RequestRouting = {},
  ) {
    this.current = model;
    this.deployments = deployments;
  }

  /**
   * The deployment to try next, or undefined when the budget or the candidates are spent. The first attempt's, in
   * the usual case (a deployment of the model is usable), without a promise; what may wait (a retry's pause, a
   * fallback's model list) resolves later.
   */
  next(): ModelDeployment | undefined | Promise<ModelDeployment | undefined> {
    if (this.attempts.length === 0 && !this.lastWasFull) {
      const first = this.pickIn(this.deployments);
      if (first) return first;
    }
    return this.after();
  }

  private async after(): Promise<ModelDeployment | undefined> {
    if (this.lastWasFull) {
      // A deployment at its rpm, tpm or parallel limit was never called: another of the model's, untried, takes the
      // request as a first choice would; with none left, the model's fallbacks (as for a 429), then nothing.
      this.lastWasFull = false;
      const other = this.deployments.find((d) => this.usable(d) && !this.failedHere?.has(d.id));
      if (other) return other;
      if (this.lastKind === null) return this.nextFallback();
    }
    if (this.attempts.length > 0 && this.lastKind !== null) {
      // A retry within the model, if this kind of failure is retried and retries are left.
      const configured = this.settings.retryPolicy[this.lastKind] ?? (RETRIED.has(this.lastKind) ? this.settings.numRetries : 0);
      // A client may ask for fewer retries, never more.
      const retries = Math.min(configured, this.asked.numRetries ?? configured);
      if (this.retriesUsed < retries) {
        const again = this.pickIn(this.deployments);
        if (again) {
          this.retriesUsed++;
          if (this.settings.retryAfterMs > 0) await new Promise((r) => setTimeout(r, this.settings.retryAfterMs));
          return again;
        }
      }
      return this.nextFallback();
    }
    return this.pickIn(this.deployments) ?? this.nextFallback();
  }

  /** Has the model being tried more than one deployment? */
  hasAlternatives(): boolean {
    return this.deployments.length > 1;
  }

  /** The deployment's own limits refused the attempt (it was not called): it is not tried again in this request. */
  atCapacity(deployment: ModelDeployment, err: DeploymentAtCapacityError): void {
    this.full ??= new Map();
    this.full.set(deployment.id, err.retryAfterMs);
    this.lastWasFull = true;
  }

  failed(deployment: ModelDeployment, kind: FailureKind, err: unknown): void {
    this.failedHere ??= new Set();
    this.failedHere.add(deployment.id);
    this.attempts.push({ deployment: deployment.id, failure: kind });
    this.lastKind = kind;
    this.lastError = err;
  }

  /** What the client is told when nothing answered: the last upstream failure, or that every deployment cools down. */
  exhausted(): GatewayError | unknown {
    if (this.lastError !== undefined) return this.lastError;
    if (this.full) {
      const wait = Math.max(1, Math.ceil(Math.min(...this.full.values()) / 1000));
      return new RateLimitError(`every deployment of '${this.current}' is at its rpm, tpm or max_parallel_requests limit; retry shortly`, {
        code: "no_deployment_available",
        retryAfterSeconds: wait,
      });
    }
    const wait = Math.max(1, Math.ceil(this.health.msUntilAny(this.deployments.map((d) => d.id)) / 1000));
    return new ServiceUnavailableError(`every deployment of '${this.current}' is cooling down after repeated failures; retry shortly`, {
      code: "no_deployment_available",
      retryAfterSeconds: wait,
    });
  }

  /**
   * Headers of the answer, as a flat list of names and values (what `writeHead` takes): the deployment that served
   * it, and how many attempts it took (LiteLLM's names beside ours).
   */
  answerHeaders(served: ModelDeployment): readonly string[] {
    if (this.attempts.length === 0 && this.retriesUsed === 0 && this.fallbacksUsed === 0) return firstTryHeaders(served);
    return routingHeaders(served.id, this.attempts.length + 1, this.retriesUsed, this.fallbacksUsed);
  }

  /** The first of `list` not cooling down, untried in this request first; undefined when all cool down. */
  private pickIn(list: readonly ModelDeployment[]): ModelDeployment | undefined {
    let triedButUsable: ModelDeployment | undefined;
    for (const d of list) {
      if (!this.usable(d)) continue;
      if (!this.failedHere?.has(d.id)) return d;
      triedButUsable ??= d;
    }
    // Retrying the one that failed (a single deployment's transient 429) beats not retrying at all.
    return this.attempts.length > 0 ? triedButUsable : undefined;
  }

  private async nextFallback(): Promise<ModelDeployment | undefined> {
    this.fallbackChain ??= this.chainFor(this.lastKind);
    while (this.fallbacksUsed < this.fallbackChain.length) {
      const model = this.fallbackChain[this.fallbacksUsed++]!;
      if (!this.allowed(model)) continue;
      const deployments = await this.deploymentsOf(model);
      if (!deployments) continue;
      this.current = model;
      this.deployments = deployments;
      const first = deployments.find((d) => this.usable(d));
      if (first) return first;
    }
    return undefined;
  }

  /** Neither cooling down (cluster-wide) nor found at its limits in this request. */
  private usable(d: ModelDeployment): boolean {
    return !this.health.isCooling(d.id) && !this.full?.has(d.id);
  }

  /** The fallbacks for this kind of failure (LiteLLM's three lists; the general ones for everything else). */
  private chainFor(kind: FailureKind | null): readonly string[] {
    const s = this.settings;
    const model = this.current;
    if (kind === "context_window") return s.contextWindowFallbacks.get(model) ?? [];
    if (kind === "content_policy") return s.contentPolicyFallbacks.get(model) ?? [];
    if (kind === "bad_request" || kind === "auth") return [];
    return this.asked.fallbacks ?? s.fallbacks.get(model) ?? s.defaultFallbacks;
  }
}

function routingHeaders(deployment: string, attempts: number, retries: number, fallbacks: number): readonly string[] {
  return [
    "gatehouse-deployment",
    deployment,
    "gatehouse-attempts",
    String(attempts),
    "x-litellm-model-id",
    deployment,
    "x-litellm-attempted-retries",
    String(retries),
    "x-litellm-attempted-fallbacks",
    String(fallbacks),
  ];
}

/**
 * Most answers come from the first deployment tried: their routing headers are the same for every answer of that
 * deployment, so they are made once for it. Keyed by the deployment object: a model changed or reloaded is a new one.
 */
const firstTry = new WeakMap<ModelDeployment, readonly string[]>();
function firstTryHeaders(served: ModelDeployment): readonly string[] {
  let headers = firstTry.get(served);
  if (headers === undefined) {
    headers = Object.freeze(routingHeaders(served.id, 1, 0, 0));
    firstTry.set(served, headers);
  }
  return headers;
}
