import { z } from "zod";

/**
 * LiteLLM's `router_settings`, as Gatehouse honours them (docs/routing.md). Every field a LiteLLM config may set
 * here is either honoured or refused by name — a migrated config never loses its fallbacks without a word.
 * Times are seconds, as in LiteLLM.
 */

/** What a failed attempt was, for retry and cooldown policies (LiteLLM's exception classes). */
export const FAILURE_KINDS = ["bad_request", "auth", "timeout", "rate_limit", "content_policy", "server_error", "connection", "context_window"] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

// LiteLLM's RetryPolicy and AllowedFailsPolicy field names, and the failure each counts.
const POLICY_FIELDS: Record<string, FailureKind> = {
  BadRequestError: "bad_request",
  AuthenticationError: "auth",
  TimeoutError: "timeout",
  RateLimitError: "rate_limit",
  ContentPolicyViolationError: "content_policy",
  InternalServerError: "server_error",
};

/** LiteLLM's routing strategies, every one honoured (proxy/routing-strategy.ts). */
export const ROUTING_STRATEGIES = ["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2", "usage-based-routing", "cost-based-routing"] as const;
export type RoutingStrategyName = (typeof ROUTING_STRATEGIES)[number];

const count = z.number().int().min(0).max(100);
const seconds = z.number().positive().max(86_400);
/** `[{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}]`: each entry one model's fallbacks, in order. */
const fallbackList = z.array(z.record(z.string().min(1), z.array(z.string().min(1)).min(1)));

function policy(suffix: "Retries" | "AllowedFails") {
  return z.strictObject(Object.fromEntries(Object.keys(POLICY_FIELDS).map((name) => [`${name}${suffix}`, count.optional()])) as Record<string, z.ZodOptional<typeof count>>);
}

export const routerSettingsSchema = z.strictObject({
  routing_strategy: z.enum(ROUTING_STRATEGIES, { error: `one of ${ROUTING_STRATEGIES.join(", ")} (LiteLLM's names)` }).optional(),
  // latency-based-routing: deployments within this fraction of the fastest share its traffic (LiteLLM's default 0).
  routing_strategy_args: z.strictObject({ lowest_latency_buffer: z.number().min(0).max(10).optional() }).optional(),
  num_retries: count.optional(),
  retry_after: z.number().min(0).max(60).optional(),
  retry_policy: policy("Retries").optional(),
  allowed_fails: count.optional(),
  allowed_fails_policy: policy("AllowedFails").optional(),
  cooldown_time: seconds.optional(),
  fallbacks: fallbackList.optional(),
  context_window_fallbacks: fallbackList.optional(),
  content_policy_fallbacks: fallbackList.optional(),
  default_fallbacks: z.array(z.string().min(1)).optional(),
  timeout: seconds.optional(),
  stream_timeout: seconds.optional(),
});

export interface RouterSettings {
  /** How a model's deployments are chosen among (LiteLLM's `routing_strategy`; `usage-based-routing` is v2). */
  strategy: RoutingStrategyName;
  /** latency-based-routing: deployments whose latency is within this fraction of the fastest share its traffic. */
  lowestLatencyBuffer: number;
  /** Retries within a model's deployments after the first attempt (LiteLLM's default: 2). */
  numRetries: number;
  /** The least wait before a retry (ms). */
  retryAfterMs: number;
  /** Retries by failure kind, overriding numRetries for that kind (absent: numRetries). */
  retryPolicy: Partial<Record<FailureKind, number>>;
  /** Failures of a deployment within a minute that it may have before it cools down (LiteLLM's default: 3). */
  allowedFails: number;
  allowedFailsPolicy: Partial<Record<FailureKind, number>>;
  /** How long a deployment that failed too often is left out, on every replica (LiteLLM's default: 5 s). */
  cooldownMs: number;
  fallbacks: ReadonlyMap<string, readonly string[]>;
  contextWindowFallbacks: ReadonlyMap<string, readonly string[]>;
  contentPolicyFallbacks: ReadonlyMap<string, readonly string[]>;
  /** Fallbacks of every model without its own. */
  defaultFallbacks: readonly string[];
  /** The upstream read timeout of every deployment that sets none (ms). */
  timeoutMs: number | undefined;
  streamTimeoutMs: number | undefined;
  /** LiteLLM's general_settings.background_health_checks and health_check_interval (default 300 s). */
  healthChecks: { enabled: boolean; intervalMs: number };
}

export const DEFAULT_ROUTER_SETTINGS: RouterSettings = {
  strategy: "simple-shuffle",
  lowestLatencyBuffer: 0,
  numRetries: 2,
  retryAfterMs: 0,
  retryPolicy: {},
  allowedFails: 3,
  allowedFailsPolicy: {},
  cooldownMs: 5_000,
  fallbacks: new Map(),
  contextWindowFallbacks: new Map(),
  contentPolicyFallbacks: new Map(),
  defaultFallbacks: [],
  timeoutMs: undefined,
  streamTimeoutMs: undefined,
  healthChecks: { enabled: false, intervalMs: 300_000 },
};

type RouterInput = z.output<typeof routerSettingsSchema>;

function policyOf(raw: Record<string, number | undefined> | undefined, suffix: string): Partial<Record<FailureKind, number>> {
  const out: Partial<Record<FailureKind, number>> = {};
  for (const [name, kind] of Object.entries(POLICY_FIELDS)) {
    const v = raw?.[`${name}${suffix}`];
    if (v !== undefined) out[kind] = v;
  }
  return out;
}

function fallbackMap(list: RouterInput["fallbacks"]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const entry of list ?? []) for (const [model, to] of Object.entries(entry)) map.set(model, [...(map.get(model) ?? []), ...to]);
  return map;
}

/** `general_settings` fields the router reads (LiteLLM keeps its health checks there). */
export interface GeneralHealthSettings {
  background_health_checks?: boolean | undefined;
  health_check_interval?: number | undefined;
}

export function routerSettingsFrom(input: RouterInput | undefined, general?: GeneralHealthSettings): RouterSettings {
  const healthChecks = {
    enabled: general?.background_health_checks ?? false,
    intervalMs: (general?.health_check_interval ?? DEFAULT_ROUTER_SETTINGS.healthChecks.intervalMs / 1000) * 1000,
  };
  if (!input) return { ...DEFAULT_ROUTER_SETTINGS, healthChecks };
  return {
    healthChecks,
    strategy: input.routing_strategy === "usage-based-routing" ? "usage-based-routing-v2" : (input.routing_strategy ?? "simple-shuffle"),
    lowestLatencyBuffer: input.routing_strategy_args?.lowest_latency_buffer ?? 0,
    numRetries: input.num_retries ?? DEFAULT_ROUTER_SETTINGS.numRetries,
    retryAfterMs: (input.retry_after ?? 0) * 1000,
    retryPolicy: policyOf(input.retry_policy, "Retries"),
    allowedFails: input.allowed_fails ?? DEFAULT_ROUTER_SETTINGS.allowedFails,
    allowedFailsPolicy: policyOf(input.allowed_fails_policy, "AllowedFails"),
    cooldownMs: (input.cooldown_time ?? DEFAULT_ROUTER_SETTINGS.cooldownMs / 1000) * 1000,
    fallbacks: fallbackMap(input.fallbacks),
    contextWindowFallbacks: fallbackMap(input.context_window_fallbacks),
    contentPolicyFallbacks: fallbackMap(input.content_policy_fallbacks),
    defaultFallbacks: input.default_fallbacks ?? [],
    timeoutMs: input.timeout === undefined ? undefined : input.timeout * 1000,
    streamTimeoutMs: input.stream_timeout === undefined ? undefined : input.stream_timeout * 1000,
  };
}

/** Every model a fallback list names must be served by the config (a typo would otherwise fail only in an outage). */
export function unknownFallbackModels(settings: RouterSettings, served: ReadonlySet<string>): string[] {
  const named = new Set<string>(settings.defaultFallbacks);
  for (const map of [settings.fallbacks, settings.contextWindowFallbacks, settings.contentPolicyFallbacks]) {
    for (const [from, to] of map) {
      named.add(from);
      for (const t of to) named.add(t);
    }
  }
  return [...named].filter((m) => !served.has(m));
}
