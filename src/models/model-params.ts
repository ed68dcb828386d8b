import type { z } from "zod";
import { DeploymentProblem, deploymentFromParams, type ProviderBases, shownApiBase } from "../config/models.js";
import { litellmParamsSchema, type ModelDeployment } from "../config/schema.js";
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

/**
 * The deployment served for a model row: its params (no key) and its opened key, by the config file's rules.
 * `bases`: where a model without an api_base goes (the settings' providerBases).
 */
export function deploymentOf(
  modelName: string,
  params: ApiLitellmParams,
  apiKey: string | undefined,
  bases: ProviderBases,
  modelInfo?: Record<string, unknown> | null,
): ModelDeployment {
  if (apiKey?.startsWith("os.environ/"))
    throw new BadRequestError("api_key must be the key itself here (os.environ/ references belong in the config file)", {
      code: "invalid_api_key_reference",
      param: "litellm_params.api_key",
    });
  try {
    return deploymentFromParams(modelName, params, apiKey, bases, modelInfo);
  } catch (err) {
    if (!(err instanceof DeploymentProblem)) throw err;
    throw new BadRequestError(`${err.field}: ${err.message}`, { code: err.field === "model" ? "unsupported_provider" : "missing_api_base", param: `litellm_params.${err.field}` });
  }
}

/** litellm_params as shown to anyone: never the key, only whether there is one; an api_base without credentials. */
export function maskedParams(params: Record<string, unknown>, hasKey: boolean): Record<string, unknown> {
  const { api_key: _never, ...rest } = params;
  if (typeof rest.api_base === "string") rest.api_base = shownApiBase(rest.api_base);
  return hasKey ? { ...rest, api_key: "[hidden]" } : rest;
}
