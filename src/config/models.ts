import { createHash } from "node:crypto";
import type { z } from "zod";
import { ConfigError, where, type SettingsContext, type UnsetVariable } from "./context.js";
import { didYouMean } from "./did-you-mean.js";
import { apiBaseProblem, litellmParamsSchema, modelEntrySchema, PROVIDERS, type ModelDeployment, type ProviderName } from "./schema.js";
import { resolveSecret } from "./secrets.js";

type ModelEntry = z.output<typeof modelEntrySchema>;

/** OpenAI's own API: where `openai/<model>` and bare model names go when no api_base is given (as in LiteLLM). */
export const OPENAI_API_BASE = "https://api.openai.com/v1";
/** Anthropic's API, where `anthropic/<model>` goes when no api_base is given. */
export const ANTHROPIC_API_BASE = "https://api.anthropic.com";

/** Where each provider's models go when their entry names no api_base. */
export interface ProviderBases {
  openai: string;
  anthropic: string;
}

/** The providers' own APIs. */
export const PUBLIC_API_BASES: ProviderBases = { openai: OPENAI_API_BASE, anthropic: ANTHROPIC_API_BASE };

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]", "0.0.0.0", "[::]"]);

/**
 * The providers' own APIs, or the base URLs the environment names for them under LiteLLM's names, `OPENAI_API_BASE`
 * and `ANTHROPIC_API_BASE`, so a deployment that sends every call through a company proxy keeps working when it
 * moves to Gatehouse. Not `OPENAI_BASE_URL` or `ANTHROPIC_BASE_URL`, which LiteLLM also reads: those are what the
 * SDKs and Claude Code read, and a shell set up to point its clients at Gatehouse would point Gatehouse at itself.
 * A value is checked as an api_base is (a URL without credentials), and one naming this gateway's own port on this
 * machine is refused: every call would come back to it.
 */
export function providerBasesFrom(env: NodeJS.ProcessEnv, ownPort: number, problems: string[]): ProviderBases {
  const read = (variable: string, fallback: string): string => {
    const value = env[variable];
    if (value === undefined || value === "") return fallback;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      problems.push(`environment variable ${variable}: not a URL; give the base URL of the API, e.g. ${fallback}`);
      return fallback;
    }
    const problem = url.protocol === "http:" || url.protocol === "https:" ? apiBaseProblem(value) : "must be an http:// or https:// URL";
    if (problem) problems.push(`environment variable ${variable}: ${problem}`);
    else if (LOOPBACK_HOSTS.has(url.hostname) && Number(url.port || (url.protocol === "https:" ? 443 : 80)) === ownPort)
      problems.push(
        `environment variable ${variable}: names this gateway itself (port ${ownPort}); every call would come back to it. It is where Gatehouse sends model calls, not where clients find Gatehouse`,
      );
    return value;
  };
  return { openai: read("OPENAI_API_BASE", OPENAI_API_BASE), anthropic: read("ANTHROPIC_API_BASE", ANTHROPIC_API_BASE) };
}

// Read off the schema, so a field Gatehouse starts to read is no longer reported as ignored.
const MODEL_ENTRY_FIELDS = Object.keys(modelEntrySchema.shape);
const KNOWN_LITELLM_PARAMS = new Set(Object.keys(litellmParamsSchema.shape));
/** The prices Gatehouse reads: every field of litellm_params that looks like one. */
const PRICE_FIELDS = [...KNOWN_LITELLM_PARAMS].filter(looksLikePrice);

function looksLikePrice(field: string): boolean {
  return /cost|price/i.test(field);
}

/**
 * Fields of a model that look like prices but are not read as prices: a typo (`input_cost_per_tokn`), a LiteLLM price
 * of another kind (`input_cost_per_second`), a price in `model_info` (where LiteLLM takes them too). Each would leave
 * the model served free, with nothing to say so but a warning at start, so each is refused — by the config file,
 * `/model/new`, `/model/update` and the LiteLLM import alike — naming the field (`litellm_params.…`, `model_info.…`)
 * and the price it may have meant (docs/configuration.md, "model_list").
 */
export function unreadPrices(litellmParams: unknown, modelInfo: unknown): Array<{ field: string; message: string }> {
  const found: Array<{ field: string; message: string }> = [];
  for (const [section, fields] of [
    ["litellm_params", litellmParams],
    ["model_info", modelInfo],
  ] as const) {
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) continue;
    for (const [name, value] of Object.entries(fields)) {
      // A field without a value (LiteLLM writes null for prices it was not given) is not a price either way.
      if (value === null || value === undefined || value === "") continue;
      if (!looksLikePrice(name) || (section === "litellm_params" && KNOWN_LITELLM_PARAMS.has(name))) continue;
      found.push({ field: `${section}.${name}`, message: unreadPriceMessage(section, name) });
    }
  }
  return found;
}

function unreadPriceMessage(section: "litellm_params" | "model_info", name: string): string {
  if (section === "model_info" && PRICE_FIELDS.includes(name))
    return `prices are read from litellm_params, not model_info: move it to litellm_params.${name} (as it is, the model would be served free)`;
  const near = didYouMean(name, PRICE_FIELDS);
  return `not a price Gatehouse reads, so the model would be served free${near ? `; did you mean litellm_params.${near}?` : ""} (Gatehouse prices by ${PRICE_FIELDS.join(", ")})`;
}

/**
 * `model_list` as deployments. Problems are collected rather than thrown, so every bad entry is reported
 * at once; unknown fields are warnings, since LiteLLM configs carry many Gatehouse does not need, except those
 * that look like prices (unreadPrices). An `os.environ/` reference not set here goes to `unset` under config check.
 */
export function readModels(entries: ModelEntry[], ctx: SettingsContext, bases: ProviderBases, warnings: string[], problems: string[], unset: UnsetVariable[]): ModelDeployment[] {
  if (entries.length === 0)
    problems.push(
      `${where(ctx, ["model_list"])}: model_list: no models; add at least one (e.g. { model_name: gpt-4o, litellm_params: { model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY } })`,
    );
  const models: ModelDeployment[] = [];
  entries.forEach((entry, i) => {
    const unknownFields = Object.keys(entry).filter((k) => !MODEL_ENTRY_FIELDS.includes(k));
    if (unknownFields.length > 0)
      warnings.push(
        `${where(ctx, ["model_list", i, unknownFields[0]!])}: model_list[${i}] (${entry.model_name}): unknown field(s) ${unknownFields.join(", ")} ignored (a typo? known: ${MODEL_ENTRY_FIELDS.join(", ")})`,
      );
    try {
      const deployment = toDeployment(entry, i, ctx, bases, warnings, unset);
      // Entries alike in name, model and api_base (two keys for one endpoint, say) get ids of their own.
      const alike = models.filter((m) => m.id.startsWith(deployment.id)).length;
      models.push(alike === 0 ? deployment : { ...deployment, id: `${deployment.id}-${alike}` });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message);
    }
  });
  return models;
}

/** A deployment as `litellm_params.model` names it, provider first (`anthropic/claude-sonnet-4-5`): spend logs, /debug/routing. */
export function litellmModelOf(d: Pick<ModelDeployment, "provider" | "upstreamModel">): string {
  return `${d.provider}/${d.upstreamModel}`;
}

/**
 * A config deployment's id: the same on every replica reading the same entry (replicas share routing state by it).
 * Two entries alike in model, upstream and api_base are told apart by readModels (their place among the alike).
 */
function deploymentId(modelName: string, model: string, apiBase: string | undefined): string {
  return createHash("sha256")
    .update(`${modelName}\0${model}\0${apiBase ?? ""}`)
    .digest("hex")
    .slice(0, 16);
}

function toDeployment(entry: ModelEntry, index: number, ctx: SettingsContext, bases: ProviderBases, warnings: string[], unset: UnsetVariable[]): ModelDeployment {
  const field = `model_list[${index}].litellm_params`;
  const params = entry.litellm_params;
  const unread = unreadPrices(params, entry.model_info);
  if (unread.length > 0)
    throw new ConfigError(unread.map((u) => `${where(ctx, ["model_list", index, ...u.field.split(".")])}: model_list[${index}].${u.field}: ${u.message}`).join("\n"));
  const unknown = Object.keys(params).filter((k) => !KNOWN_LITELLM_PARAMS.has(k));
  if (unknown.length > 0) warnings.push(`${field} (${entry.model_name}): fields ${unknown.join(", ")} are not used by Gatehouse and were ignored`);
  try {
    const apiKey = params.api_key === undefined ? undefined : resolveSecret(params.api_key, `${field}.api_key`, ctx, unset);
    return deploymentFromParams(entry.model_name, params, apiKey, bases, entry.model_info);
  } catch (err) {
    if (!(err instanceof DeploymentProblem)) throw err;
    const path = err.field === "model" ? ["model_list", index, "litellm_params", "model"] : ["model_list", index, "litellm_params"];
    throw new ConfigError(`${where(ctx, path)}: ${field}.${err.field}: ${err.message}`);
  }
}

/** What is wrong with a model's litellm_params, and in which field (the config file and the API word it their way). */
export class DeploymentProblem extends Error {
  constructor(
    readonly field: "model" | "api_base",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The deployment one model's litellm_params describe, whether from the config file or from the API
 * (models/model-params.ts): one set of provider rules for both. `bases`: where a model without an api_base goes.
 */
export function deploymentFromParams(
  modelName: string,
  params: z.infer<typeof litellmParamsSchema>,
  apiKey: string | undefined,
  bases: ProviderBases,
  modelInfo?: Record<string, unknown> | null,
): ModelDeployment {
  // A bare model name is an OpenAI model, on OpenAI's API unless api_base says otherwise (as in LiteLLM).
  const bare = !params.model.includes("/");
  const slash = bare ? -1 : params.model.indexOf("/");
  const provider = bare ? "openai" : params.model.slice(0, slash);
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new DeploymentProblem(
      "model",
      `provider "${provider}" is not supported; use one of ${PROVIDERS.join(", ")} (any OpenAI-compatible server works as "openai/" with api_base)`,
    );
  }
  if (provider === "azure" && !params.api_base)
    throw new DeploymentProblem("api_base", 'required for "azure/" models: the resource\'s endpoint (https://<resource>.openai.azure.com)');
  // Without an api_base each provider's own API (or the one the environment names for it), as in LiteLLM.
  const apiBase = shownApiBase(params.api_base ?? (provider === "openai" ? bases.openai : provider === "anthropic" ? bases.anthropic : undefined))?.replace(/\/+$/, "");
  const input = params.input_cost_per_token ?? 0;
  return {
    id: deploymentId(modelName, params.model, params.api_base),
    modelName,
    weight: params.weight ?? 1,
    order: params.order ?? 1,
    provider: provider as ProviderName,
    upstreamModel: params.model.slice(slash + 1),
    apiBase,
    // OpenAI's own API speaks the Responses API; a server that calls itself OpenAI-compatible mostly does not. A
    // deployment without an api_base is taken to be OpenAI's API, even when the environment routes it elsewhere.
    speaksResponses: provider === "openai" && (params.api_base === undefined || apiBase === OPENAI_API_BASE),
    apiKey,
    inputCostPerToken: input,
    outputCostPerToken: params.output_cost_per_token ?? 0,
    cacheReadCostPerToken: params.cache_read_input_token_cost ?? input,
    cacheCreationCostPerToken: params.cache_creation_input_token_cost ?? input,
    apiVersion: params.api_version,
    dropParams: params.drop_params,
    timeoutMs: params.timeout === undefined ? undefined : params.timeout * 1000,
    healthCheck: modelInfo?.disable_background_health_check === true ? "off" : modelInfo?.mode === "embedding" ? "embedding" : "chat",
    rpm: params.rpm,
    tpm: params.tpm,
    maxParallelRequests: params.max_parallel_requests,
  };
}

/**
 * An api_base without anything that may be a credential (userinfo, query string, fragment), as it may be shown or
 * logged. The schema refuses those (schema.ts, apiBaseProblem); a model stored before it did may still hold them, and
 * they are never sent upstream either (http-upstream.ts uses the origin and path), so dropping them changes nothing
 * that is served.
 */
export function shownApiBase(apiBase: string | undefined): string | undefined {
  if (apiBase === undefined || !/[@?#]/.test(apiBase)) return apiBase;
  try {
    const url = new URL(apiBase);
    url.username = "";
    url.password = "";
    url.search = "";
    url.hash = "";
    return url.href;
  } catch {
    return "[api_base not a URL]";
  }
}
