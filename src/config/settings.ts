import { hostname } from "node:os";
import type { z } from "zod";
import { routerSettingsFrom, unknownFallbackModels } from "./router-settings.js";
import { ConfigError, formatPath, where, type SettingsContext, type UnsetVariable } from "./context.js";
import { applyEnvironment } from "./environment.js";
import { providerBasesFrom, readModels } from "./models.js";
import { isMultiHost, parsePostgresUrl, PostgresUrlError } from "./postgres-url.js";
import { configFileSchema, type ConfigFile, type RedisSentinel, type Settings } from "./schema.js";
import { resolveSecret } from "./secrets.js";
import { readConfigFile } from "./yaml-file.js";

/**
 * Gatehouse's configuration: a LiteLLM-style YAML file (model_list, general_settings) plus a
 * `gatehouse_settings` section, every setting overridable by an environment variable. Everything is validated
 * here, once, at start; the rest of the code receives a typed `Settings`.
 *
 * schema.ts says what each setting is (type, bounds, default), environment.ts which variable sets it,
 * yaml-file.ts reads a file with its line numbers, models.ts reads model_list; this module puts them together.
 */

export { ConfigError, type SettingsContext } from "./context.js";
export { settingLeaves, settingVariables, type SettingLeaf } from "./environment.js";
export type { ConfigFile, LimitSettings, ModelDeployment, ProviderName, RedisSentinel, Settings } from "./schema.js";

/** Used when no config file is given: a mock model, so `npm start` answers without any upstream. */
export const BUILTIN_CONFIG: ConfigFile = {
  model_list: [
    { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
    { model_name: "mock-embedding", litellm_params: { model: "mock/mock-embedding" } },
  ],
};

/** With an external Postgres and no redis_url: a Redis on this machine, as a developer runs it. */
const LOCAL_REDIS_URL = "redis://127.0.0.1:6379";

/** LiteLLM's sections that Gatehouse has no use for: accepted, so a LiteLLM config works, and reported. */
const IGNORED_SECTIONS = ["litellm_settings", "environment_variables"] as const;

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  portOverride?: number | undefined;
}

export function loadSettings(options: LoadOptions & { envOptional?: boolean } = {}): Settings {
  const env = options.env ?? process.env;
  const file = options.file ?? env.GATEHOUSE_CONFIG;
  const { raw, source, locate } = file ? readConfigFile(file) : { raw: BUILTIN_CONFIG, source: "built-in default config", locate: undefined };
  return settingsFromConfig(raw, { source, env, portOverride: options.portOverride, envOptional: options.envOptional, locate });
}

/**
 * Validates everything and reports **every** problem in one ConfigError (one line each, naming the file and
 * field, or the environment variable), so an operator fixes a config in one round.
 */
export function settingsFromConfig(input: unknown, ctx: SettingsContext): Settings {
  const { raw, fromEnv } = applyEnvironment(input, ctx.env);
  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((issue) => describeIssue(issue, ctx, fromEnv)).join("\n"));
  const config = parsed.data;
  const gs = config.gatehouse_settings;
  const warnings: string[] = [];
  const problems: string[] = [];
  const unsetVariables: UnsetVariable[] = [];
  for (const section of IGNORED_SECTIONS) {
    if (config[section] !== undefined) warnings.push(`config section "${section}" is not used by Gatehouse and was ignored`);
  }
  const port = ctx.portOverride ?? gs.port;
  const providerBases = providerBasesFrom(ctx.env, port, problems);
  const models = readModels(config.model_list, ctx, providerBases, warnings, problems, unsetVariables);
  const router = routerSettingsFrom(config.router_settings, config.general_settings);
  // A fallback may name a database model (added later through the API): a name the file does not serve is told, not refused.
  const unserved = unknownFallbackModels(router, new Set(models.map((m) => m.modelName)));
  if (unserved.length > 0) warnings.push(`router_settings: fallbacks name ${unserved.join(", ")}, which this file does not serve (a database model of that name will do)`);
  const logFormat = ctx.env.LOG_FORMAT;
  if (logFormat !== undefined && logFormat !== "" && logFormat !== "json" && logFormat !== "pretty")
    problems.push(`environment variable LOG_FORMAT: "${logFormat}" is not a log format; use json or pretty`);

  // An empty URL reads as unset, in the file as in the environment.
  const configuredDatabaseUrl = gs.databaseUrl || config.general_settings?.database_url;
  const embedded = !configuredDatabaseUrl;
  const databaseUrl = configuredDatabaseUrl || "";
  if (embedded && gs.redisUrl) {
    problems.push(
      `config ${ctx.source}: REDIS_URL (or redis_url) is set but no DATABASE_URL: the embedded database holds keys that other replicas sharing that Redis could not see. Set DATABASE_URL to a shared Postgres too, or unset REDIS_URL for a single embedded replica.`,
    );
  }
  if (embedded && gs.redisSentinels) {
    problems.push(
      `config ${ctx.source}: REDIS_SENTINELS (or redis_sentinels) is set but no DATABASE_URL: the embedded database holds keys that other replicas sharing that Redis could not see. Set DATABASE_URL to a shared Postgres too, or unset REDIS_SENTINELS for a single embedded replica.`,
    );
  }
  const named = (field: string) => {
    const envName = fromEnv.get(`gatehouse_settings.${field}`);
    return envName ? `environment variable ${envName}` : `${where(ctx, ["gatehouse_settings", field])}: gatehouse_settings.${field}`;
  };
  if (gs.redisSentinels && !gs.redisSentinelName) {
    problems.push(`${named("redis_sentinels")}: Sentinels need the name of the master they monitor; set REDIS_SENTINEL_NAME (or redis_sentinel_name)`);
  }
  if (gs.redisSentinelName && !gs.redisSentinels) {
    problems.push(`${named("redis_sentinel_name")}: a master name without Sentinels to ask; set REDIS_SENTINELS (or redis_sentinels) to their host:port list`);
  }
  if (gs.redisSentinels && gs.redisUrl && /^rediss:/i.test(gs.redisUrl)) {
    problems.push(`${named("redis_url")}: TLS (rediss://) is not supported through Sentinel; use redis:// with REDIS_SENTINELS`);
  }
  // A URL naming several hosts is read here, so a mistake in it fails the start with the others.
  for (const [field, url] of [
    ["database_url", databaseUrl],
    ["database_listen_url", gs.databaseListenUrl],
  ] as const) {
    if (!url || !isMultiHost(url)) continue;
    try {
      parsePostgresUrl(url);
    } catch (err) {
      if (!(err instanceof PostgresUrlError)) throw err;
      const origin = field === "database_url" && !gs.databaseUrl ? `${where(ctx, ["general_settings", field])}: general_settings.${field}` : named(field);
      problems.push(`${origin}: ${err.message}`);
    }
  }
  const secret = (value: string | undefined, path: string[], minLength: number) => readSecret(value, path, minLength, ctx, fromEnv, unsetVariables, problems);
  const masterKey = secret(config.general_settings?.master_key, ["general_settings", "master_key"], 8);
  const metricsToken = secret(gs.metrics.token, ["gatehouse_settings", "metrics", "token"], 16);
  const webhookSecret = secret(gs.alerting.webhookSecret, ["gatehouse_settings", "alerting", "webhook_secret"], 16);
  if (gs.alerting.webhookUrl && !webhookSecret)
    problems.push(`${named("alerting")}: alerting.webhook_url needs alerting.webhook_secret (at least 16 characters), so receivers can tell alerts are ours`);
  const sentinelPassword = secret(gs.redisSentinelPassword, ["gatehouse_settings", "redis_sentinel_password"], 1);
  if (problems.length > 0) throw new ConfigError(problems.join("\n"));

  const {
    databaseUrl: _databaseUrl,
    databaseListenUrl,
    redisUrl,
    redisSentinels,
    redisSentinelName,
    redisSentinelPassword: _redisSentinelPassword,
    metrics: _metrics,
    ...plain
  } = gs;
  const redisSentinel: RedisSentinel | undefined =
    !embedded && redisSentinels && redisSentinelName ? { sentinels: redisSentinels, name: redisSentinelName, password: sentinelPassword } : undefined;
  return {
    ...plain,
    port,
    embedded,
    databaseUrl,
    databaseListenUrl: databaseListenUrl || databaseUrl,
    redisUrl: embedded ? undefined : redisUrl || LOCAL_REDIS_URL,
    redisSentinel,
    masterKey,
    metricsToken,
    webhookSecret,
    replicaId: ctx.env.GATEHOUSE_REPLICA_ID || `${hostname()}-${process.pid}`,
    models,
    providerBases,
    router,
    warnings,
    unsetVariables,
    source: ctx.source,
  };
}

/** A schema problem, named by the variable that set the field if one did, else by the file and line. */
function describeIssue(issue: z.core.$ZodIssue, ctx: SettingsContext, fromEnv: Map<string, string>): string {
  const path = formatPath(issue.path);
  const at = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  if (issue.code === "unrecognized_keys") return `${where(ctx, [...at, issue.keys[0]!])}: ${path}: unknown field(s) ${issue.keys.join(", ")}`;
  const envName = fromEnv.get(path);
  return envName ? `environment variable ${envName} (${path}): ${issue.message}` : `${where(ctx, at)}: ${path}: ${issue.message}`;
}

/**
 * A secret that may be an `os.environ/VAR` reference, so its length can only be checked once resolved.
 * "" (a reference not set here, under `config check`) reads as unset.
 */
function readSecret(
  value: string | undefined,
  path: string[],
  minLength: number,
  ctx: SettingsContext,
  fromEnv: Map<string, string>,
  unset: UnsetVariable[],
  problems: string[],
): string | undefined {
  if (value === undefined) return undefined;
  const field = path.join(".");
  let resolved: string;
  try {
    resolved = resolveSecret(value, field, ctx, unset);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.message);
    return undefined;
  }
  if (resolved === "") return undefined;
  if (resolved.length < minLength) {
    const envName = fromEnv.get(field);
    problems.push(`${envName ? `environment variable ${envName}` : `${where(ctx, path)}: ${field}`}: must be at least ${minLength} characters`);
    return undefined;
  }
  return resolved;
}
