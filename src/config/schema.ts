import { isIP } from "node:net";
import { z } from "zod";
import { camelKeys } from "./camel-case.js";
import { parseDuration } from "./duration.js";
import { type RouterSettings, routerSettingsSchema } from "./router-settings.js";

/**
 * The config file's shape, written once. Each setting's type, bounds and default are here; the typed
 * `Settings` the code reads, the environment variable of each setting (environment.ts) and the reports of
 * unknown fields are all derived from it.
 */

export const PROVIDERS = ["openai", "azure", "anthropic", "mock"] as const;
export type ProviderName = (typeof PROVIDERS)[number];

// ---- model_list: LiteLLM's format ----

const nonNegative = z.number().finite().nonnegative();

// Loose: LiteLLM has many more fields; they are accepted, kept and reported once as ignored (models.ts), but for
// those that look like prices, which are refused (models.ts, unreadPrices): ignored, they would make a model free.
export const litellmParamsSchema = z
  .object({
    // "<provider>/<model>" ("openai/", "azure/", "anthropic/", "mock/"), or a bare OpenAI model name ("gpt-4o"), as
    // LiteLLM infers OpenAI for those.
    model: z
      .string()
      .regex(/^([a-z_]+\/.+|[A-Za-z0-9][\w.:-]*)$/, 'must look like "<provider>/<upstream model>" (openai, azure, anthropic, mock) or an OpenAI model name such as "gpt-4o"'),
    // Origin and path only (docs/models.md, "Where the upstream key goes"): a key goes in api_key, sealed and never
    // shown, not in the URL, which /model/info shows and the upstream's refusals log.
    api_base: z
      .url()
      .superRefine((value, ctx) => {
        const problem = apiBaseProblem(value);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      })
      .optional(),
    api_key: z.string().optional(),
    // Azure's api-version, or Anthropic's anthropic-version header (each has a default).
    api_version: z.string().min(1).max(64).optional(),
    // Parameters a provider has no place for are dropped (and reported in a response header) instead of refused.
    drop_params: z.boolean().optional(),
    // Routing (docs/routing.md): a deployment's share among its model's (simple-shuffle), and its priority
    // (deployments of the lowest order serve; the next order only while all of those cool down).
    weight: z.number().positive().max(1_000_000).optional(),
    order: z.number().int().min(1).max(1_000).optional(),
    // The deployment's own limits, held for the whole cluster (docs/routing.md, "Deployment limits"): requests and
    // tokens a minute, and calls in flight at once.
    rpm: z.number().int().positive().max(1_000_000_000).optional(),
    tpm: z.number().int().positive().max(1_000_000_000_000).optional(),
    max_parallel_requests: z.number().int().positive().max(1_000_000).optional(),
    input_cost_per_token: nonNegative.optional(),
    output_cost_per_token: nonNegative.optional(),
    // Prompt tokens read from and written to the provider's prompt cache (LiteLLM's names); the input price when unset.
    cache_read_input_token_cost: nonNegative.optional(),
    cache_creation_input_token_cost: nonNegative.optional(),
    // Seconds, as in LiteLLM. There is no `stream_timeout`: one read timeout serves streams and answers alike,
    // so LiteLLM's is reported as ignored rather than silently accepted.
    timeout: z.number().positive().optional(),
  })
  .loose();

/**
 * Why an api_base is refused, or null. Credentials in it (`https://user:pass@host`, `?key=…`, `?api-key=…`) would be
 * stored and shown as written; and Gatehouse sends requests to the api_base's origin and path only, so they would
 * never have reached the upstream anyway. The message never quotes the value: it is printed and logged.
 */
export function apiBaseProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null; // z.url() says what is wrong with it
  }
  if (url.username !== "" || url.password !== "") return "must not hold credentials (user:password@): put the upstream key in api_key, which is sealed and never shown";
  if (url.search !== "" || url.hash !== "")
    return 'must not have a query string or fragment ("?key=…"): requests go to its origin and path only; put the upstream key in api_key (and Azure\'s api-version in api_version)';
  return null;
}

// Loose, so an unknown field (a typo such as "modle_info") is reported by name rather than refused.
export const modelEntrySchema = z
  .object({
    // A name with an unpaired surrogate (YAML's "\ud800") would be stored in spend logs as U+FFFD, as would another such name.
    model_name: z
      .string()
      .min(1)
      .refine((name) => !/\p{Cs}/u.test(name), "must not contain an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)"),
    litellm_params: litellmParamsSchema,
    model_info: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

// ---- gatehouse_settings: every field has a default or a documented meaning when unset ----

const int = () => z.number().int();

/**
 * A section of `gatehouse_settings`: strict, since a misspelled setting would otherwise silently keep its
 * default; read by the code in camelCase; absent means every field at its default.
 */
function section<Shape extends z.ZodRawShape>(shape: Shape) {
  return z
    .strictObject(shape)
    .transform((fields) => camelKeys(fields))
    .prefault({} as z.input<z.ZodObject<Shape, z.core.$strict>>);
}

/**
 * `30s`, `2h`, `30d`: read into milliseconds. The default is written as a duration too (a prefault goes
 * through the parser), so it reads the way an operator would write it.
 */
function duration(fallback: string) {
  return z
    .string()
    .transform((text, ctx) => {
      try {
        return parseDuration(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
        return z.NEVER;
      }
    })
    .prefault(fallback);
}

/** An empty string (`data_dir: ""`) means "not set", as an empty environment variable does. */
function emptyMeansDefault<T extends z.ZodDefault>(schema: T) {
  return z.preprocess((value: string | undefined) => (value === "" ? undefined : value), schema);
}

/**
 * Sentinel addresses: "h1:26379,h2:26379" (as the environment gives them) or a list; a port left out is
 * Sentinel's 26379, an IPv6 address is written in brackets. Empty means unset.
 */
function sentinelList() {
  return z.union([z.string(), z.array(z.string())]).transform((value, ctx) => {
    const entries = (typeof value === "string" ? value.split(",") : value).map((e) => e.trim());
    if (entries.length === 1 && entries[0] === "") return undefined;
    if (entries.length === 0) return undefined;
    const sentinels: Array<{ host: string; port: number }> = [];
    for (const entry of entries) {
      const m = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(entry) ?? /^([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(entry);
      const port = Number(m?.[2] ?? 26379);
      if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
        ctx.addIssue({ code: "custom", message: `${JSON.stringify(entry)} is not a Sentinel address: write host:port, e.g. "10.0.0.5:26379" (an IPv6 address in brackets)` });
        return z.NEVER;
      }
      sentinels.push({ host: m[1]!, port });
    }
    return sentinels;
  });
}

/** Addresses and CIDR ranges ("10.0.0.5", "10.0.0.0/8", "fd00::/8"), as a list or one comma-separated string. */
function addressList() {
  return z.union([z.string(), z.array(z.string())]).transform((value, ctx) => {
    const entries = (typeof value === "string" ? value.split(",") : value).map((e) => e.trim()).filter((e) => e !== "");
    for (const entry of entries) {
      const [address, bits, extra] = entry.split("/");
      const family = isIP(address ?? "");
      const prefix = Number(bits);
      const ok = family !== 0 && extra === undefined && (bits === undefined || (/^\d+$/.test(bits) && prefix <= (family === 4 ? 32 : 128)));
      if (!ok) {
        ctx.addIssue({ code: "custom", message: `${JSON.stringify(entry)} is not an IP address or CIDR range, e.g. "10.0.0.5" or "10.0.0.0/8"` });
        return z.NEVER;
      }
    }
    return entries;
  });
}

const auth = section({
  // 100k records of well under 1 KiB each: a bounded, small share of memory.
  l1_max_entries: int().positive().default(100_000),
  // An upper bound on how long a record lives in L1 at all; coherence (events) bounds staleness, not this.
  l1_ttl_ms: int()
    .positive()
    .default(10 * 60_000),
  // Unknown keys are remembered briefly so a flood of bad keys does not reach Postgres on every request.
  negative_ttl_ms: int().nonnegative().default(2_000),
  l2_ttl_seconds: int().positive().default(3_600),
  // How often the unknown-key filter is rebuilt from Postgres; 0 turns the filter off. Deleted keys stay in
  // the filter until a rebuild (a few false "maybe"s, never a false "no"): hourly is plenty.
  token_filter_rebuild_ms: int().min(0).default(3_600_000),
});

// The code reads milliseconds, so these two are renamed rather than camel-cased.
const rotation = z
  .strictObject({
    default_grace_period: duration("0s"),
    max_grace_period: duration("30d"),
  })
  .transform((r) => ({ defaultGraceMs: r.default_grace_period, maxGraceMs: r.max_grace_period }))
  .prefault({});

const coherence = section({
  // The heartbeat (target 1 s) bounds staleness when notifications are lost; past the hard bound (2 s)
  // without a completed catch-up, L1 is not trusted (docs/coherence.md).
  heartbeat_interval_ms: int().min(50).max(60_000).default(1_000),
  stale_after_ms: int().min(100).max(600_000).default(2_000),
  // A replica disconnected longer than this cannot replay and drops its L1 instead.
  event_retention_ms: int().min(60_000).default(3_600_000),
});

const postgres = section({
  // How long a statement may run (Postgres's statement_timeout); the client gives up 1 s later (a server that stops
  // answering cannot enforce its own). Failures past it count toward the Postgres breaker.
  statement_timeout_ms: int().min(100).max(600_000).default(3_000),
  // How long a new pool connection may take to open.
  connect_timeout_ms: int().min(100).max(600_000).default(2_000),
});

const shutdown = section({
  // Behind a load balancer, set this to a little more than its health-check interval.
  delay_ms: int().nonnegative().default(0),
  // Long enough for a typical streamed completion to finish. At most an hour: the process waits for the
  // drain on a timer, and a timer far past that (beyond 2^31 ms) would fire at once.
  drain_timeout_ms: int().nonnegative().max(3_600_000, "must be at most 1 h (3600000)").default(30_000),
});

const upkeep = section({
  sweep_interval_ms: int().min(100).default(30_000),
  // "Kept for at least 24 h", plus an hour of margin.
  idempotency_retention_ms: int()
    .min(86_400_000, "must be at least 24 h")
    .default(25 * 3_600_000),
});

/**
 * The key that seals upstream credentials of models added through the API (AES-256-GCM, docs/models.md).
 * Unset: derived from the master key. To rotate: set the new key, move the old one to `previous_salt_key`, run
 * `gatehouse models reseal`, then drop `previous_salt_key`.
 */
const credentials = section({
  salt_key: z.string().min(32, "must be at least 32 characters").optional(),
  previous_salt_key: z.string().min(32, "must be at least 32 characters").optional(),
});

const metrics = section({
  // A bearer token that may read /metrics and nothing else (the master key may too); unset: master key only.
  token: z.string().min(16, "must be at least 16 characters").optional(),
});

/** Alerts: a key's soft budget crossed (docs/keys.md, "Soft budgets"). */
const alerting = section({
  // Where alerts are POSTed (JSON, signed); unset: alerts are a log line and a metric only.
  webhook_url: z.url().optional(),
  // The HMAC-SHA256 key of the Gatehouse-Signature header (at least 16 characters; os.environ/ references work).
  webhook_secret: z.string().optional(),
  // Attempts per alert before it is given up (logged): 1 s, 2 s, 4 s… apart.
  webhook_attempts: int().min(1).max(10).default(5),
});

/** Budgets, spend and rate limits (docs/limits.md). */
const limits = section({
  // What a request of a key with limits meets while Redis (the live ledger) is unreachable: `fail_open_local`
  // enforces each limit per replica, divided by the number of replicas; `fail_closed` answers 503. Keys without
  // limits are served either way. Keeping on serving is what most operators want when the limiter's store fails.
  redis_unavailable: z.enum(["fail_open_local", "fail_closed"]).default("fail_open_local"),
  // Completion tokens assumed for the worst-case reservation when a request sets no max_tokens.
  default_max_tokens: int().positive().default(4_096),
  // A reservation not settled by then (its replica died) is released. As long as the longest upstream read
  // timeout, so a live request is never released early.
  reservation_ttl_ms: int().min(1_000).default(600_000),
  // How often each replica writes what it charged to the durable ledger: the most spend a crash can lose.
  flush_interval_ms: int().min(50).max(60_000).default(1_000),
  // Fixed replica count for fail_open_local; unset: counted from Postgres (live LISTEN connections).
  replica_count: int().positive().optional(),
  // Admissions held ready per key and replica for keys far from their limits (0: off). One takes the Redis
  // round trip off a sequential client's path; more help concurrent requests of one key but hold more
  // capacity away from the other replicas.
  prefetch: int().min(0).max(16).default(1),
  // How long a prefetched admission waits for a request before it is given back: long enough to bridge the
  // gap between a busy key's requests, short enough that capacity held for a key gone quiet comes back soon.
  prefetch_max_age_ms: int().min(100).max(60_000).default(2_000),
});

/** Spend logs: one row per request, written off the request path (docs/spend-logs.md). */
const spend_logs = section({
  // "off" writes no rows (the durable spend ledgers per key, team and user are kept either way).
  logging: z.enum(["on", "off"]).default("on"),
  // How often each replica writes its queued rows: also the most a SIGKILL can lose.
  flush_interval_ms: int().min(50).max(60_000).default(1_000),
  // Rows per batch: one transaction each.
  batch_rows: int().min(1).max(10_000).default(5_000),
  // Rows kept in memory while neither Postgres nor the local journal takes them; past this they are dropped and counted.
  memory_max_rows: int().min(100).max(10_000_000).default(100_000),
  // Raw rows older than this are dropped a whole day (partition) at a time; the daily totals are kept.
  retention_days: int().min(1).max(36_500).default(30),
});

/** The admin UI at /ui and the replica registry its cluster page reads (docs/admin-ui.md). */
const admin_ui = section({
  // "off": no /ui routes, no sessions (the admin API takes the master key only), no heartbeats.
  mode: z.enum(["on", "off"]).default("on"),
  // A session ends this long after its login (or at logout, or when the master key changes).
  session_ttl_ms: int()
    .min(60_000)
    .max(30 * 86_400_000)
    .default(12 * 3_600_000),
  // How often each replica writes its row in the registry; the cluster page is this fresh.
  heartbeat_interval_ms: int().min(200).max(60_000).default(2_000),
  // Wrong master keys allowed per client address and window on the UI's login, for the whole cluster; past them the
  // address gets 429 until its window ends (docs/admin-ui.md, "Login attempts"). Ten a minute stops guessing and
  // leaves room for typos.
  login_max_failures: int().min(1).max(100_000).default(10),
  login_failure_window_ms: int().min(1_000).max(86_400_000).default(60_000),
  // The reverse proxies in front of the gateway (addresses or CIDR ranges, a list or comma-separated): a login that
  // arrives through one counts against the client X-Forwarded-For names. Unset: the connection's own address.
  trusted_proxies: addressList().optional(),
});

/** A response (a stream included) is never cut by these; they bound what a client may hold open. */
const server = section({
  // Headers are small: a client that needs more than 10 s to send them is holding a socket open on purpose.
  headers_timeout_ms: int().min(1_000).default(10_000),
  // The whole request, headers and body. A 10 MiB body at 3 Mbit/s takes ~28 s; a client slower than that is
  // treated like one that stalled.
  request_timeout_ms: int().min(1_000).default(30_000),
  // Longer than any load balancer's idle timeout, so the balancer closes idle connections, not us.
  keep_alive_timeout_ms: int().min(1_000).default(65_000),
  // Whether the master key may call the OpenAI routes. LiteLLM lets it; Gatehouse does too unless told not to.
  master_key_on_proxy: z.enum(["allow", "forbid"]).default("allow"),
  // A request no level limits, to a deployment that speaks its route as it is, is relayed straight from the upstream
  // call's callbacks (docs/performance.md, "The straight path"); `off` sends every request the general way. Both
  // answer alike: the switch is there to compare them, and as a way back should the straight path misbehave.
  straight_path: z.enum(["on", "off"]).default("on"),
  // Worker processes on one port (`--workers` overrides): one per core with `auto`. Each is a full replica.
  // Written as text in the environment ("2", "auto"), as a number or "auto" in the file.
  workers: z
    .union([int().min(1).max(64), z.literal("auto"), z.string().regex(/^\d+$/, 'must be a number of workers or "auto"').transform(Number).pipe(int().min(1).max(64))])
    .default(1),
});

const upstream = section({
  connect_timeout_ms: int().positive().default(5_000),
  // Waiting for upstream headers, and between body chunks; a deployment's `timeout` overrides it.
  read_timeout_ms: int().positive().default(600_000),
  connections_per_origin: int().positive().default(256),
});

export const gatehouseSettingsSchema = z
  .strictObject({
    port: int().min(0).max(65535).default(4000),
    // Unset: one replica on an embedded Postgres (PGlite) in data_dir. `general_settings.database_url` works too.
    database_url: z.string().optional(),
    // Unset: database_url. A direct connection for LISTEN, past a transaction pooler.
    database_listen_url: z.string().optional(),
    // Unset: the local default Redis with an external Postgres, none when embedded (settings.ts decides).
    redis_url: z.string().optional(),
    // Unset: no Sentinel. "host:port,host:port" (a list in the file works too): Redis is the master these
    // Sentinels name, followed across failovers; redis_url then gives only the password and database number.
    redis_sentinels: sentinelList().optional(),
    // The master's name in the Sentinels' `sentinel monitor <name> ...`; needed with redis_sentinels.
    redis_sentinel_name: z.string().optional(),
    // The Sentinels' own password, if they have one (`os.environ/VAR` works).
    redis_sentinel_password: z.string().optional(),
    // Empty is allowed: one deployment alone on its Redis needs no prefix.
    redis_prefix: z
      .string()
      .regex(/^[A-Za-z0-9:_-]*$/)
      .default("gatehouse:"),
    data_dir: emptyMeansDefault(z.string().default(".gatehouse")),
    // LLM requests carry long prompts and sometimes images; 10 MiB matches common proxy defaults.
    max_request_body_bytes: int()
      .positive()
      .default(10 * 1024 * 1024),
    auth,
    rotation,
    coherence,
    postgres,
    shutdown,
    upkeep,
    metrics,
    credentials,
    limits,
    spend_logs,
    alerting,
    admin_ui,
    server,
    upstream,
  })
  .transform((fields) => camelKeys(fields));

export const configFileSchema = z.strictObject({
  model_list: z.array(modelEntrySchema).default([]),
  general_settings: z
    .looseObject({
      master_key: z.string().optional(),
      database_url: z.string().optional(),
      // LiteLLM's background health checks (docs/routing.md, "Health checks"): run by one replica for the cluster.
      background_health_checks: z.boolean().optional(),
      health_check_interval: z.number().positive().max(86_400).optional(),
    })
    .optional(),
  gatehouse_settings: gatehouseSettingsSchema.prefault({}),
  // Honoured field by field; a field Gatehouse does not honour is refused by name (docs/routing.md).
  router_settings: routerSettingsSchema.optional(),
  // LiteLLM's sections Gatehouse does not use: accepted and reported once as ignored.
  litellm_settings: z.unknown().optional(),
  environment_variables: z.unknown().optional(),
});

/** A config as written (snake_case, every default optional): what a file or a test hands to the loader. */
export type ConfigFile = z.input<typeof configFileSchema>;

type Flatten<T> = { [K in keyof T]: T[K] } & {};

/** `gatehouse_settings` as the code reads it: camelCase, defaults filled in. */
type GatehouseSettings = z.output<typeof gatehouseSettingsSchema>;

export type LimitSettings = GatehouseSettings["limits"];

export interface ModelDeployment {
  /**
   * This deployment's name in the cluster's shared routing state (cooldowns, failures): the same on every replica
   * for one config entry (a hash of what it is and where it is in the file), a database model's id for those.
   */
  id: string;
  /** The name clients ask for. Several deployments may share it; they are load-balanced. */
  modelName: string;
  /** Its share of its model's traffic, against the others' (simple-shuffle's weight; 1 when unset). */
  weight: number;
  /** Its priority: the lowest order among a model's deployments serves; the others only while those cool down. */
  order: number;
  provider: ProviderName;
  /** The model name sent upstream (the part after the provider prefix). */
  upstreamModel: string;
  /** Origin and path only, never a credential (config/models.ts, shownApiBase): it is shown and logged. */
  apiBase: string | undefined;
  /** It is OpenAI's own API, which takes the Responses API as it came (others get it translated into chat). */
  speaksResponses?: boolean | undefined;
  apiKey: string | undefined;
  inputCostPerToken: number;
  outputCostPerToken: number;
  /** Prompt tokens read from the provider's cache, and written to it (the input price unless the config sets one). */
  cacheReadCostPerToken: number;
  cacheCreationCostPerToken: number;
  /** Azure's api-version or Anthropic's anthropic-version (each provider has a default). */
  apiVersion?: string | undefined;
  /** Parameters the provider has no place for are dropped, and named in a response header, instead of refused. */
  dropParams?: boolean | undefined;
  /** Overrides the upstream read timeout for this deployment, in ms. */
  timeoutMs: number | undefined;
  /**
   * What a background health check of it calls (model_info.mode "embedding": an embedding; otherwise a one-token
   * chat), or "off" (model_info.disable_background_health_check).
   */
  healthCheck?: "chat" | "embedding" | "off" | undefined;
  /** Its limits across the whole cluster (litellm_params rpm, tpm, max_parallel_requests); undefined: none. */
  rpm?: number | undefined;
  tpm?: number | undefined;
  maxParallelRequests?: number | undefined;
  /** A database model's id (spend logs name the deployment that served a request); absent for config models. */
  modelId?: string | undefined;
}

export interface RedisSentinel {
  sentinels: Array<{ host: string; port: number }>;
  name: string;
  password: string | undefined;
}

/**
 * What the rest of the code receives: `gatehouse_settings` as parsed, plus what is worked out from several
 * settings at once (the database mode, secrets behind `os.environ/`, the models).
 */
export type Settings = Flatten<
  Omit<GatehouseSettings, "databaseUrl" | "databaseListenUrl" | "redisUrl" | "redisSentinels" | "redisSentinelName" | "redisSentinelPassword" | "metrics"> & {
    /**
     * True when no database is configured: one replica on an embedded Postgres (PGlite) in `dataDir`,
     * with in-process L2, locks and counters. `databaseUrl` is then filled in when it starts.
     */
    embedded: boolean;
    databaseUrl: string;
    databaseListenUrl: string;
    /** Undefined in embedded mode: no Redis at all. With `redisSentinel`, only its credentials and db are used. */
    redisUrl: string | undefined;
    /** Redis through Sentinel (it wins over redisUrl's host); undefined when not configured, and when embedded. */
    redisSentinel: RedisSentinel | undefined;
    masterKey: string | undefined;
    /** A bearer token that may read /metrics and nothing else; the master key may too. */
    metricsToken: string | undefined;
    /** alerting.webhook_secret, resolved. */
    webhookSecret: string | undefined;
    /** Names this replica in LISTEN's application_name and in /debug/coherence. */
    replicaId: string;
    models: ModelDeployment[];
    /** Where models without an api_base go, database models too (OPENAI_API_BASE, ANTHROPIC_API_BASE; config/models.ts). */
    providerBases: { openai: string; anthropic: string };
    /** LiteLLM's router_settings, as honoured (docs/routing.md). */
    router: RouterSettings;
    /** Things worth telling the operator once at start (unknown fields, ignored sections). */
    warnings: string[];
    /** `config check` only: `os.environ/` references whose variable is not set here (empty at start, which refuses them). */
    unsetVariables: Array<{ variable: string; field: string }>;
    source: string;
  }
>;
