import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { parseDuration } from "./duration.js";

/**
 * Gatehouse's configuration: a LiteLLM-style YAML file (model_list, general_settings) plus a
 * `gatehouse_settings` section, with the infrastructure settings overridable by environment variables.
 * Everything is validated here, once, at start; the rest of the code receives a typed `Settings`.
 */

export class ConfigError extends Error {}

const PROVIDERS = ["openai", "mock"] as const;
export type ProviderName = (typeof PROVIDERS)[number];

/** The litellm_params fields Gatehouse reads; any other field is accepted, kept and reported once. */
// `stream_timeout` is LiteLLM's; Gatehouse has one read timeout for streams and answers alike (`timeout`), so it is
// reported as ignored rather than silently accepted.
const KNOWN_LITELLM_PARAMS = new Set(["model", "api_base", "api_key", "input_cost_per_token", "output_cost_per_token", "timeout"]);

const nonNegative = z.number().finite().nonnegative();

const litellmParamsSchema = z
  .object({
    // "openai/<model>", "mock/<name>", or a bare OpenAI model name ("gpt-4o"), as LiteLLM infers OpenAI for those.
    model: z.string().regex(/^([a-z_]+\/.+|[A-Za-z0-9][\w.:-]*)$/, 'must look like "openai/<upstream model>", "mock/<name>" or an OpenAI model name such as "gpt-4o"'),
    api_base: z.url().optional(),
    api_key: z.string().optional(),
    input_cost_per_token: nonNegative.optional(),
    output_cost_per_token: nonNegative.optional(),
    timeout: z.number().positive().optional(),
  })
  .loose();

const MODEL_ENTRY_FIELDS = new Set(["model_name", "litellm_params", "model_info"]);
// Loose, so an unknown field (a typo such as "modle_info") is reported by name rather than refused.
const modelEntrySchema = z
  .object({
    model_name: z.string().min(1),
    litellm_params: litellmParamsSchema,
    model_info: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

const gatehouseSettingsSchema = z
  .object({
    port: z.number().int().min(0).max(65535).optional(),
    database_url: z.string().optional(),
    database_listen_url: z.string().optional(),
    redis_url: z.string().optional(),
    redis_prefix: z.string().regex(/^[A-Za-z0-9:_-]*$/).optional(),
    data_dir: z.string().optional(),
    max_request_body_bytes: z.number().int().positive().optional(),
    auth: z
      .object({
        l1_max_entries: z.number().int().positive().optional(),
        l1_ttl_ms: z.number().int().positive().optional(),
        negative_ttl_ms: z.number().int().nonnegative().optional(),
        l2_ttl_seconds: z.number().int().positive().optional(),
        token_filter_rebuild_ms: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
    rotation: z
      .object({
        default_grace_period: z.string().optional(),
        max_grace_period: z.string().optional(),
      })
      .strict()
      .optional(),
    coherence: z
      .object({
        heartbeat_interval_ms: z.number().int().min(50).max(60_000).optional(),
        stale_after_ms: z.number().int().min(100).max(600_000).optional(),
        event_retention_ms: z.number().int().min(60_000).optional(),
      })
      .strict()
      .optional(),
    shutdown: z
      .object({
        delay_ms: z.number().int().nonnegative().optional(),
        drain_timeout_ms: z.number().int().nonnegative().optional(),
      })
      .strict()
      .optional(),
    upkeep: z
      .object({
        sweep_interval_ms: z.number().int().min(100).optional(),
        idempotency_retention_ms: z.number().int().min(86_400_000, "must be at least 24 h").optional(),
      })
      .strict()
      .optional(),
    metrics: z.object({ token: z.string().min(16, "must be at least 16 characters").optional() }).strict().optional(),
    limits: z
      .object({
        redis_unavailable: z.enum(["fail_open_local", "fail_closed"]).optional(),
        default_max_tokens: z.number().int().positive().optional(),
        reservation_ttl_ms: z.number().int().min(1_000).optional(),
        flush_interval_ms: z.number().int().min(50).max(60_000).optional(),
        replica_count: z.number().int().positive().optional(),
        prefetch: z.number().int().min(0).max(16).optional(),
        prefetch_max_age_ms: z.number().int().min(100).max(60_000).optional(),
      })
      .strict()
      .optional(),
    server: z
      .object({
        headers_timeout_ms: z.number().int().min(1_000).optional(),
        request_timeout_ms: z.number().int().min(1_000).optional(),
        keep_alive_timeout_ms: z.number().int().min(1_000).optional(),
        master_key_on_proxy: z.enum(["allow", "forbid"]).optional(),
      })
      .strict()
      .optional(),
    upstream: z
      .object({
        connect_timeout_ms: z.number().int().positive().optional(),
        read_timeout_ms: z.number().int().positive().optional(),
        connections_per_origin: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const configFileSchema = z
  .object({
    model_list: z.array(modelEntrySchema).default([]),
    general_settings: z
      .object({ master_key: z.string().optional(), database_url: z.string().optional() })
      .loose()
      .optional(),
    gatehouse_settings: gatehouseSettingsSchema.optional(),
    litellm_settings: z.unknown().optional(),
    router_settings: z.unknown().optional(),
    environment_variables: z.unknown().optional(),
  })
  .strict();

export type ConfigFile = z.infer<typeof configFileSchema>;

export interface ModelDeployment {
  /** The name clients ask for. Several deployments may share it; they are load-balanced. */
  modelName: string;
  provider: ProviderName;
  /** The model name sent upstream (the part after the provider prefix). */
  upstreamModel: string;
  apiBase: string | undefined;
  apiKey: string | undefined;
  inputCostPerToken: number;
  outputCostPerToken: number;
  /** Overrides the upstream read timeout for this deployment, in ms. */
  timeoutMs: number | undefined;
}

export interface Settings {
  port: number;
  /**
   * True when no database is configured: one replica on an embedded Postgres (PGlite) in `dataDir`,
   * with in-process L2, locks and counters. `databaseUrl` is then filled in when it starts.
   */
  embedded: boolean;
  databaseUrl: string;
  databaseListenUrl: string;
  /** Undefined in embedded mode: no Redis at all. */
  redisUrl: string | undefined;
  redisPrefix: string;
  masterKey: string | undefined;
  dataDir: string;
  maxRequestBodyBytes: number;
  /** tokenFilterRebuildMs: how often the unknown-key filter is rebuilt from Postgres; 0 turns the filter off. */
  auth: { l1MaxEntries: number; l1TtlMs: number; negativeTtlMs: number; l2TtlSeconds: number; tokenFilterRebuildMs: number };
  upstream: { connectTimeoutMs: number; readTimeoutMs: number; connectionsPerOrigin: number };
  /**
   * How long a client may take to send its headers, and its whole request (headers and body); how long an idle
   * keep-alive connection stays open. A response (a stream included) is never cut by these. Whether the master
   * key may call the OpenAI routes.
   */
  server: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number; masterKeyOnProxy: "allow" | "forbid" };
  rotation: { defaultGraceMs: number; maxGraceMs: number };
  coherence: { heartbeatIntervalMs: number; staleAfterMs: number; eventRetentionMs: number };
  upkeep: { sweepIntervalMs: number; idempotencyRetentionMs: number };
  shutdown: { delayMs: number; drainTimeoutMs: number };
  limits: LimitSettings;
  /** A bearer token that may read /metrics and nothing else; the master key may too. */
  metricsToken: string | undefined;
  /** Names this replica in LISTEN's application_name and in /debug/coherence. */
  replicaId: string;
  models: ModelDeployment[];
  /** Things worth telling the operator once at start (unknown fields, ignored sections). */
  warnings: string[];
  source: string;
}

/** Budgets, spend and rate limits. */
export interface LimitSettings {
  /**
   * What a request of a key with limits meets while Redis (the live ledger) is unreachable:
   * `fail_open_local` enforces each limit per replica, divided by the number of replicas;
   * `fail_closed` answers 503. Keys without limits are served either way.
   */
  redisUnavailable: "fail_open_local" | "fail_closed";
  /** Completion tokens assumed for the worst-case reservation when a request sets no max_tokens. */
  defaultMaxTokens: number;
  /** A reservation not settled by then (its replica died) is released. Longer than any request may take. */
  reservationTtlMs: number;
  /** How often each replica writes what it charged to the durable ledger: the most spend a crash can lose. */
  flushIntervalMs: number;
  /** Fixed replica count for fail_open_local; when unset, counted from Postgres (live LISTEN connections). */
  replicaCount: number | undefined;
  /** Admissions held ready per key and replica for keys far from their limits (0: off); docs/limits.md. */
  prefetch: number;
  /** How long a prefetched admission waits for a request before it is given back. */
  prefetchMaxAgeMs: number;
}

/** Used when no config file is given: a mock model, so `npm start` answers without any upstream. */
export const BUILTIN_CONFIG: ConfigFile = {
  model_list: [
    { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
    { model_name: "mock-embedding", litellm_params: { model: "mock/mock-embedding" } },
  ],
};

export const DEFAULTS = {
  port: 4000,
  redisUrl: "redis://127.0.0.1:6379",
  redisPrefix: "gatehouse:",
  dataDir: ".gatehouse",
  // LLM requests carry long prompts and sometimes images; 10 MiB matches common proxy defaults.
  maxRequestBodyBytes: 10 * 1024 * 1024,
  // 100k records of well under 1 KiB each: a bounded, small share of memory.
  l1MaxEntries: 100_000,
  // An upper bound on how long a record lives in L1 at all; coherence (events) bounds staleness, not this.
  l1TtlMs: 10 * 60_000,
  // Unknown keys are remembered briefly so a flood of bad keys does not reach Postgres on every request.
  negativeTtlMs: 2_000,
  l2TtlSeconds: 3_600,
  // Deleted keys stay in the filter until a rebuild (a few false "maybe"s, never a false "no"): hourly is plenty.
  tokenFilterRebuildMs: 3_600_000,
  // Headers are small: a client that needs more than 10 s to send them is holding a socket open on purpose.
  headersTimeoutMs: 10_000,
  // A 10 MiB body at 3 Mbit/s takes ~28 s; a client slower than that is treated like one that stalled.
  requestTimeoutMs: 30_000,
  // Longer than any load balancer's idle timeout, so the balancer closes idle connections, not us.
  keepAliveTimeoutMs: 65_000,
  // LiteLLM lets the master key call models; Gatehouse does too unless told not to.
  masterKeyOnProxy: "allow",
  connectTimeoutMs: 5_000,
  readTimeoutMs: 600_000,
  connectionsPerOrigin: 256,
  defaultGracePeriod: "0s",
  maxGracePeriod: "30d",
  // docs/coherence.md #2: the heartbeat (target 1 s) bounds staleness when notifications are lost; past the
  // hard bound (2 s) without a completed catch-up, L1 is not trusted.
  heartbeatIntervalMs: 1_000,
  staleAfterMs: 2_000,
  // A replica disconnected longer than this cannot replay and drops its L1 instead.
  eventRetentionMs: 3_600_000,
  sweepIntervalMs: 30_000,
  // Behind a load balancer, set this to a little more than its health-check interval.
  shutdownDelayMs: 0,
  // Long enough for a typical streamed completion to finish.
  drainTimeoutMs: 30_000,
  // "Kept for at least 24 h", plus an hour of margin.
  idempotencyRetentionMs: 25 * 3_600_000,
  // A gateway that keeps serving is what most operators want when the limiter's store fails.
  limitsRedisUnavailable: "fail_open_local",
  defaultMaxTokens: 4_096,
  // As long as the longest upstream read timeout: a live request is never released early.
  reservationTtlMs: 600_000,
  flushIntervalMs: 1_000,
  // One admission held ready takes the Redis round trip off a sequential client's path; more help
  // concurrent requests of one key but hold more capacity away from the other replicas.
  prefetch: 1,
  // Long enough to bridge the gap between a busy key's requests, short enough that capacity held ready
  // by a replica whose key went quiet comes back quickly.
  prefetchMaxAgeMs: 2_000,
} as const;

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  portOverride?: number | undefined;
}

export function loadSettings(options: LoadOptions & { envOptional?: boolean } = {}): Settings {
  const env = options.env ?? process.env;
  const file = options.file ?? env.GATEHOUSE_CONFIG;
  let raw: unknown = BUILTIN_CONFIG;
  let source = "built-in default config";
  let locate: SettingsContext["locate"];
  if (file) {
    source = path.resolve(file);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`config ${source}: cannot read: ${(err as Error).message}`);
    }
    try {
      const lineCounter = new LineCounter();
      const doc = parseDocument(text, { lineCounter });
      if (doc.errors.length > 0) throw doc.errors[0];
      raw = doc.toJS() ?? {};
      // Messages name the line of the field at fault, not just its path.
      locate = (at) => {
        for (let n = at.length; n > 0; n--) {
          const node = doc.getIn(at.slice(0, n), true) as { range?: [number, number, number] } | undefined;
          if (node?.range) return lineCounter.linePos(node.range[0]).line;
          const pair = n > 0 ? (doc.getIn(at.slice(0, n - 1), true) as { items?: Array<{ key?: { value?: unknown; range?: [number, number, number] } }> } | undefined) : undefined;
          const key = pair?.items?.find((i) => i.key?.value === at[n - 1])?.key;
          if (key?.range) return lineCounter.linePos(key.range[0]).line;
        }
        return undefined;
      };
    } catch (err) {
      throw new ConfigError(`config ${source}: not valid YAML: ${(err as Error).message}`);
    }
  }
  return settingsFromConfig(raw, { source, env, portOverride: options.portOverride, envOptional: options.envOptional, locate });
}

/** One leaf of `gatehouse_settings`: its YAML path and the environment variable that overrides it. */
export interface SettingLeaf {
  path: string[];
  env: string;
  kind: "number" | "string" | "enum";
}

/**
 * Every setting under `gatehouse_settings`, read off the schema itself, so a new setting gets its
 * environment variable (GATEHOUSE_<SECTION>_<FIELD>) without anyone remembering to add one.
 */
export function settingLeaves(): SettingLeaf[] {
  const leaves: SettingLeaf[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string[]) => {
    for (const [name, field] of Object.entries(shape)) {
      const inner = field instanceof z.ZodOptional ? (field.unwrap() as z.ZodType) : field;
      const path = [...prefix, name];
      if (inner instanceof z.ZodObject) walk(inner.shape as Record<string, z.ZodType>, path);
      else leaves.push({ path, env: `GATEHOUSE_${path.join("_").toUpperCase()}`, kind: inner instanceof z.ZodNumber ? "number" : inner instanceof z.ZodEnum ? "enum" : "string" });
    }
  };
  walk(gatehouseSettingsSchema.shape as Record<string, z.ZodType>, []);
  return leaves;
}

/** Environment variables win over the file: writes them into the raw config before it is validated. */
function applyEnvOverrides(raw: unknown, env: NodeJS.ProcessEnv): { raw: unknown; fromEnv: Map<string, string> } {
  const fromEnv = new Map<string, string>();
  const leaves = settingLeaves().filter((l) => env[l.env] !== undefined && env[l.env] !== "");
  if (leaves.length === 0 || raw === null || typeof raw !== "object" || Array.isArray(raw)) return { raw, fromEnv };
  const copy = structuredClone(raw) as Record<string, unknown>;
  const gs = (copy.gatehouse_settings && typeof copy.gatehouse_settings === "object" ? copy.gatehouse_settings : (copy.gatehouse_settings = {})) as Record<string, unknown>;
  for (const leaf of leaves) {
    const text = env[leaf.env]!;
    let value: unknown = text;
    if (leaf.kind === "number") {
      value = Number(text);
      if (!Number.isFinite(value as number)) throw new ConfigError(`environment variable ${leaf.env}: "${text}" is not a number`);
    }
    let node = gs;
    for (const key of leaf.path.slice(0, -1)) {
      if (!node[key] || typeof node[key] !== "object") node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[leaf.path.at(-1)!] = value;
    fromEnv.set(["gatehouse_settings", ...leaf.path].join("."), leaf.env);
  }
  return { raw: copy, fromEnv };
}

export interface SettingsContext {
  source: string;
  env: NodeJS.ProcessEnv;
  portOverride?: number | undefined;
  /** `config check --env-optional`: an unset `os.environ/VAR` is reported as "set at start", not refused. */
  envOptional?: boolean;
  /** The line of the config file a field (path) is on, when the config came from a file. */
  locate?: ((path: Array<string | number>) => number | undefined) | undefined;
}

/** "config FILE:LINE" for the field at `path` (without the line when unknown). */
function where(ctx: SettingsContext, path: Array<string | number>): string {
  const line = ctx.locate?.(path);
  return `config ${ctx.source}${line ? `:${line}` : ""}`;
}

/**
 * Validates everything and reports **every** problem in one ConfigError (one line each, naming the file and
 * field, or the environment variable), so an operator fixes a config in one round.
 */
export function settingsFromConfig(input: unknown, ctx: SettingsContext): Settings {
  const { raw, fromEnv } = applyEnvOverrides(input, ctx.env);
  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues
        .map((issue) => {
          const path = formatPath(issue.path);
          const envName = fromEnv.get(path);
          const at = issue.path.filter((p): p is string | number => typeof p !== "symbol");
          if (issue.code === "unrecognized_keys") return `${where(ctx, [...at, issue.keys[0]!])}: ${path ? `${path}: ` : ""}unknown field(s) ${issue.keys.join(", ")}`;
          return envName ? `environment variable ${envName} (${path}): ${issue.message}` : `${where(ctx, at)}: ${path}: ${issue.message}`;
        })
        .join("\n"),
    );
  }
  const config = parsed.data;
  const warnings: string[] = [];
  const problems: string[] = [];
  for (const section of ["litellm_settings", "router_settings", "environment_variables"] as const) {
    if (config[section] !== undefined) warnings.push(`config section "${section}" is not used by Gatehouse and was ignored`);
  }
  if (config.model_list.length === 0) problems.push(`${where(ctx, ["model_list"])}: model_list: no models; add at least one (e.g. { model_name: gpt-4o, litellm_params: { model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY } })`);
  const models: ModelDeployment[] = [];
  config.model_list.forEach((entry, i) => {
    const unknownFields = Object.keys(entry).filter((k) => !MODEL_ENTRY_FIELDS.has(k));
    if (unknownFields.length > 0) warnings.push(`${where(ctx, ["model_list", i, unknownFields[0]!])}: model_list[${i}] (${entry.model_name}): unknown field(s) ${unknownFields.join(", ")} ignored (a typo? known: ${[...MODEL_ENTRY_FIELDS].join(", ")})`);
    try {
      models.push(toDeployment(entry, i, ctx, warnings));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message);
    }
  });
  const logFormat = ctx.env.LOG_FORMAT;
  if (logFormat !== undefined && logFormat !== "" && logFormat !== "json" && logFormat !== "pretty") problems.push(`environment variable LOG_FORMAT: "${logFormat}" is not a log format; use json or pretty`);
  const gs = config.gatehouse_settings ?? {};
  const env = ctx.env;

  const port = ctx.portOverride ?? envInt(env, "PORT") ?? gs.port ?? DEFAULTS.port;
  const configuredDatabaseUrl = env.DATABASE_URL || gs.database_url || config.general_settings?.database_url;
  const embedded = !configuredDatabaseUrl;
  const databaseUrl = configuredDatabaseUrl || "";
  const configuredRedisUrl = env.REDIS_URL || gs.redis_url;
  if (embedded && configuredRedisUrl) {
    throw new ConfigError(
      `config ${ctx.source}: REDIS_URL (or redis_url) is set but no DATABASE_URL: the embedded database holds keys that other replicas sharing that Redis could not see. Set DATABASE_URL to a shared Postgres too, or unset REDIS_URL for a single embedded replica.`,
    );
  }
  const masterKeyFromEnv = Boolean(env.GATEHOUSE_MASTER_KEY);
  const masterKeySetting = env.GATEHOUSE_MASTER_KEY || config.general_settings?.master_key;
  let masterKey: string | undefined;
  try {
    masterKey = masterKeySetting ? resolveSecret(masterKeySetting, "general_settings.master_key", ctx, warnings) : undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.message);
  }
  if (masterKey !== undefined && masterKey !== "" && masterKey.length < 8) {
    problems.push(masterKeyFromEnv ? "environment variable GATEHOUSE_MASTER_KEY: must be at least 8 characters" : `config ${ctx.source}: general_settings.master_key: must be at least 8 characters`);
  }
  if (masterKey === "") masterKey = undefined; // set at start (config check --env-optional)
  if (problems.length > 0) throw new ConfigError(problems.join("\n"));
  return {
    port,
    embedded,
    databaseUrl,
    databaseListenUrl: env.DATABASE_LISTEN_URL || gs.database_listen_url || databaseUrl,
    // External Postgres without REDIS_URL: the local default Redis, as before; embedded: none.
    redisUrl: embedded ? undefined : configuredRedisUrl || DEFAULTS.redisUrl,
    // Read directly as well: an empty prefix is allowed, and the generic override skips empty values.
    redisPrefix: env.GATEHOUSE_REDIS_PREFIX ?? gs.redis_prefix ?? DEFAULTS.redisPrefix,
    masterKey,
    // GATEHOUSE_DATA_DIR, GATEHOUSE_SHUTDOWN_DELAY_MS and the like reach `gs` through applyEnvOverrides.
    dataDir: gs.data_dir || DEFAULTS.dataDir,
    maxRequestBodyBytes: gs.max_request_body_bytes ?? DEFAULTS.maxRequestBodyBytes,
    auth: {
      l1MaxEntries: gs.auth?.l1_max_entries ?? DEFAULTS.l1MaxEntries,
      l1TtlMs: gs.auth?.l1_ttl_ms ?? DEFAULTS.l1TtlMs,
      negativeTtlMs: gs.auth?.negative_ttl_ms ?? DEFAULTS.negativeTtlMs,
      l2TtlSeconds: gs.auth?.l2_ttl_seconds ?? DEFAULTS.l2TtlSeconds,
      tokenFilterRebuildMs: gs.auth?.token_filter_rebuild_ms ?? DEFAULTS.tokenFilterRebuildMs,
    },
    upstream: {
      connectTimeoutMs: gs.upstream?.connect_timeout_ms ?? DEFAULTS.connectTimeoutMs,
      readTimeoutMs: gs.upstream?.read_timeout_ms ?? DEFAULTS.readTimeoutMs,
      connectionsPerOrigin: gs.upstream?.connections_per_origin ?? DEFAULTS.connectionsPerOrigin,
    },
    server: {
      headersTimeoutMs: gs.server?.headers_timeout_ms ?? DEFAULTS.headersTimeoutMs,
      requestTimeoutMs: gs.server?.request_timeout_ms ?? DEFAULTS.requestTimeoutMs,
      keepAliveTimeoutMs: gs.server?.keep_alive_timeout_ms ?? DEFAULTS.keepAliveTimeoutMs,
      masterKeyOnProxy: gs.server?.master_key_on_proxy ?? DEFAULTS.masterKeyOnProxy,
    },
    rotation: {
      defaultGraceMs: durationSetting(env.GATEHOUSE_DEFAULT_GRACE_PERIOD ?? gs.rotation?.default_grace_period ?? DEFAULTS.defaultGracePeriod, "gatehouse_settings.rotation.default_grace_period", ctx.source),
      maxGraceMs: durationSetting(env.GATEHOUSE_MAX_GRACE_PERIOD ?? gs.rotation?.max_grace_period ?? DEFAULTS.maxGracePeriod, "gatehouse_settings.rotation.max_grace_period", ctx.source),
    },
    coherence: {
      heartbeatIntervalMs: gs.coherence?.heartbeat_interval_ms ?? DEFAULTS.heartbeatIntervalMs,
      staleAfterMs: gs.coherence?.stale_after_ms ?? DEFAULTS.staleAfterMs,
      eventRetentionMs: gs.coherence?.event_retention_ms ?? DEFAULTS.eventRetentionMs,
    },
    upkeep: {
      sweepIntervalMs: gs.upkeep?.sweep_interval_ms ?? DEFAULTS.sweepIntervalMs,
      idempotencyRetentionMs: gs.upkeep?.idempotency_retention_ms ?? DEFAULTS.idempotencyRetentionMs,
    },
    shutdown: {
      delayMs: gs.shutdown?.delay_ms ?? DEFAULTS.shutdownDelayMs,
      drainTimeoutMs: envInt(env, "GATEHOUSE_DRAIN_TIMEOUT_MS", 3_600_000) ?? gs.shutdown?.drain_timeout_ms ?? DEFAULTS.drainTimeoutMs,
    },
    limits: {
      redisUnavailable: gs.limits?.redis_unavailable ?? DEFAULTS.limitsRedisUnavailable,
      defaultMaxTokens: gs.limits?.default_max_tokens ?? DEFAULTS.defaultMaxTokens,
      reservationTtlMs: gs.limits?.reservation_ttl_ms ?? DEFAULTS.reservationTtlMs,
      flushIntervalMs: gs.limits?.flush_interval_ms ?? DEFAULTS.flushIntervalMs,
      replicaCount: gs.limits?.replica_count,
      prefetch: gs.limits?.prefetch ?? DEFAULTS.prefetch,
      prefetchMaxAgeMs: gs.limits?.prefetch_max_age_ms ?? DEFAULTS.prefetchMaxAgeMs,
    },
    metricsToken: metricsToken(gs.metrics?.token, ctx),
    replicaId: env.GATEHOUSE_REPLICA_ID || `${hostname()}-${process.pid}`,
    models,
    warnings,
    source: ctx.source,
  };
}

function metricsToken(value: string | undefined, ctx: SettingsContext): string | undefined {
  if (value === undefined) return undefined;
  const token = resolveSecret(value, "gatehouse_settings.metrics.token", ctx, []);
  if (token === "") return undefined;
  if (token.length < 16) throw new ConfigError(`config ${ctx.source}: gatehouse_settings.metrics.token: must be at least 16 characters`);
  return token;
}

function durationSetting(value: string, field: string, source: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new ConfigError(`config ${source}: ${field}: ${(err as Error).message}`);
  }
}

function toDeployment(entry: ConfigFile["model_list"][number], index: number, ctx: SettingsContext, warnings: string[]): ModelDeployment {
  const field = `model_list[${index}].litellm_params`;
  const params = entry.litellm_params;
  // A bare model name is an OpenAI model, on OpenAI's API unless api_base says otherwise (as in LiteLLM).
  const bare = !params.model.includes("/");
  const slash = bare ? -1 : params.model.indexOf("/");
  const provider = bare ? "openai" : params.model.slice(0, slash);
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new ConfigError(`${where(ctx, ["model_list", index, "litellm_params", "model"])}: ${field}.model: provider "${provider}" is not supported; use one of ${PROVIDERS.join(", ")} (any OpenAI-compatible server works as "openai/" with api_base)`);
  }
  if (provider === "openai" && !params.api_base && !bare) {
    throw new ConfigError(`${where(ctx, ["model_list", index, "litellm_params"])}: ${field}.api_base: required for "openai/" models (e.g. https://api.openai.com/v1)`);
  }
  const unknown = Object.keys(params).filter((k) => !KNOWN_LITELLM_PARAMS.has(k));
  if (unknown.length > 0) warnings.push(`${field} (${entry.model_name}): fields ${unknown.join(", ")} are not used by Gatehouse and were ignored`);
  return {
    modelName: entry.model_name,
    provider: provider as ProviderName,
    upstreamModel: params.model.slice(slash + 1),
    apiBase: (params.api_base ?? (bare ? "https://api.openai.com/v1" : undefined))?.replace(/\/+$/, ""),
    apiKey: params.api_key === undefined ? undefined : resolveSecret(params.api_key, `${field}.api_key`, ctx, warnings),
    inputCostPerToken: params.input_cost_per_token ?? 0,
    outputCostPerToken: params.output_cost_per_token ?? 0,
    timeoutMs: params.timeout === undefined ? undefined : params.timeout * 1000,
  };
}

/** LiteLLM's `os.environ/VAR` indirection for secrets. A missing variable is a config error, not a silent empty key. */
function resolveSecret(value: string, field: string, ctx: SettingsContext, warnings: string[]): string {
  if (!value.startsWith("os.environ/")) return value;
  const name = value.slice("os.environ/".length);
  const resolved = ctx.env[name];
  if (!resolved) {
    if (ctx.envOptional) {
      warnings.push(`${field}: environment variable ${name} is not set here; it must be set where the gateway starts`);
      return "";
    }
    throw new ConfigError(`config ${ctx.source}: ${field}: environment variable ${name} is not set`);
  }
  return resolved;
}

function envInt(env: NodeJS.ProcessEnv, name: string, max = 65_535): number | undefined {
  const value = env[name];
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new ConfigError(`environment variable ${name}: "${value}" is not a whole number from 0 to ${max}`);
  return n;
}

function formatPath(p: readonly PropertyKey[]): string {
  if (p.length === 0) return "(top level)";
  return p.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`)).join("");
}
