import type { z } from "zod";
import { litellmParamsSchema, PROVIDERS, type ModelDeployment, type ProviderName } from "../config/schema.js";
import { BadRequestError } from "../errors/errors.js";

/**
 * `litellm_params` of a model added through the API, checked as the config file's are (config/models.ts): the
 * same schema and the same provider rules, with 400s naming the field instead of config errors. `api_key` must be
 * the key itself: `os.environ/` references belong in the config file, where the operator controls the environment.
 */
// Strict: only the fields Gatehouse uses are stored. Anything else (extra headers, cloud secrets) would be kept in
// clear and shown by /model/info, so it is refused with a 400 naming it.
export const apiLitellmParamsSchema = litellmParamsSchema.strict();

export type ApiLitellmParams = z.infer<typeof litellmParamsSchema>;

/** The deployment served for a model row: its params (no key) and its opened key. */
export function deploymentOf(modelName: string, params: ApiLitellmParams, apiKey: string | undefined): ModelDeployment {
  const bare = !params.model.includes("/");
  const slash = bare ? -1 : params.model.indexOf("/");
  const provider = bare ? "openai" : params.model.slice(0, slash);
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new BadRequestError(`provider "${provider}" is not supported; use one of ${PROVIDERS.join(", ")}`, "litellm_params.model", "unsupported_provider");
  }
  if (provider === "openai" && !params.api_base && !bare) throw new BadRequestError('api_base is required for "openai/" models', "litellm_params.api_base", "missing_api_base");
  if (apiKey?.startsWith("os.environ/"))
    throw new BadRequestError("api_key must be the key itself here (os.environ/ references belong in the config file)", "litellm_params.api_key", "invalid_api_key_reference");
  return {
    modelName,
    provider: provider as ProviderName,
    upstreamModel: params.model.slice(slash + 1),
    apiBase: (params.api_base ?? (bare ? "https://api.openai.com/v1" : undefined))?.replace(/\/+$/, ""),
    apiKey,
    inputCostPerToken: params.input_cost_per_token ?? 0,
    outputCostPerToken: params.output_cost_per_token ?? 0,
    timeoutMs: params.timeout === undefined ? undefined : params.timeout * 1000,
  };
}

/** litellm_params as shown to anyone: never the key, only whether there is one. */
export function maskedParams(params: Record<string, unknown>, hasKey: boolean): Record<string, unknown> {
  const { api_key: _never, ...rest } = params;
  return hasKey ? { ...rest, api_key: "[hidden]" } : rest;
}
