import { budgetInterval, parseBudgetDuration, parseDuration } from "../config/duration.js";
import { ALL_PROXY_MODELS } from "../auth/auth-record.js";
import { BadRequestError } from "../errors/errors.js";
import type { KeyPatch, ModelBudgets } from "../store/key-store.js";
import type { KeyFields } from "./key-schemas.js";

/** The budget and limit fields keys, teams and users share, as a request gives them (LiteLLM's names). */
export interface LimitFields {
  models?: string[] | undefined;
  max_budget?: number | null | undefined;
  budget_duration?: string | null | undefined;
  tpm_limit?: number | null | undefined;
  rpm_limit?: number | null | undefined;
  max_parallel_requests?: number | null | undefined;
  metadata?: Record<string, unknown> | null | undefined;
}

/** The columns those fields set, in the shape every owner's store takes; durations become database-clock timestamps. */
export interface LimitPatch {
  models?: string[];
  max_budget?: number | null;
  budget_duration?: string | null;
  /** With budget_duration: its period as a Postgres interval ("86400000 milliseconds", "1 months"), null for none. */
  budget_interval?: string | null;
  tpm_limit?: number | null;
  rpm_limit?: number | null;
  max_parallel_requests?: number | null;
  metadata?: Record<string, unknown>;
}

/** The shared fields → their column patch; a model this gateway does not serve is a 400 naming it. */
export function toLimitPatch(req: LimitFields, servedModels: ReadonlySet<string>): LimitPatch {
  const patch: LimitPatch = {};
  if (req.models !== undefined) {
    const unknown = req.models.filter((m) => m !== ALL_PROXY_MODELS && !servedModels.has(m));
    if (unknown.length > 0) {
      throw new BadRequestError(`unknown model(s): ${unknown.join(", ")}; this gateway serves ${[...servedModels].join(", ") || "no models"}`, {
        code: "model_not_found",
        param: "models",
      });
    }
    patch.models = req.models;
  }
  if (req.max_budget !== undefined) patch.max_budget = req.max_budget;
  if (req.budget_duration !== undefined) {
    patch.budget_duration = req.budget_duration;
    patch.budget_interval = req.budget_duration === null ? null : budgetInterval(parseBudgetDuration(req.budget_duration));
  }
  if (req.tpm_limit !== undefined) patch.tpm_limit = req.tpm_limit;
  if (req.rpm_limit !== undefined) patch.rpm_limit = req.rpm_limit;
  if (req.max_parallel_requests !== undefined) patch.max_parallel_requests = req.max_parallel_requests;
  if (req.metadata !== undefined) patch.metadata = req.metadata ?? {};
  return patch;
}

/** Request fields → column patch. Durations become database-clock timestamps in the statement. */
export function toKeyPatch(req: KeyFields, servedModels: ReadonlySet<string>): KeyPatch {
  const patch: KeyPatch = toLimitPatch(req, servedModels);
  if (req.key_alias !== undefined) patch.key_alias = req.key_alias;
  if (req.user_id !== undefined) patch.user_id = req.user_id;
  if (req.team_id !== undefined) patch.team_id = req.team_id;
  if (req.duration !== undefined) patch.expires_in_ms = req.duration === null ? null : parseDuration(req.duration);
  if (req.blocked !== undefined) patch.blocked = req.blocked;
  if (req.tags !== undefined) patch.tags = req.tags ?? [];
  if (req.aliases !== undefined) patch.aliases = checkedAliases(req.aliases ?? {}, servedModels);
  if (req.enforced_params !== undefined) patch.enforced_params = req.enforced_params ?? [];
  if (req.soft_budget !== undefined) patch.soft_budget = req.soft_budget;
  if (req.model_max_budget !== undefined) patch.model_max_budget = modelBudgets(req.model_max_budget ?? {});
  if (req.model_rpm_limit !== undefined) patch.model_rpm_limit = req.model_rpm_limit ?? {};
  if (req.model_tpm_limit !== undefined) patch.model_tpm_limit = req.model_tpm_limit ?? {};
  return patch;
}

/** Aliases name a model clients may ask for and the served model it stands for; a target not served is a 400. */
function checkedAliases(aliases: Record<string, string>, servedModels: ReadonlySet<string>): Record<string, string> {
  const unknown = Object.entries(aliases).filter(([, to]) => !servedModels.has(to));
  if (unknown.length > 0)
    throw new BadRequestError(`aliases: ${unknown.map(([from, to]) => `${from} → ${to}`).join(", ")}: no such model on this gateway`, {
      code: "model_not_found",
      param: "aliases",
    });
  return aliases;
}

/** LiteLLM's two shapes of model_max_budget — a number, or `{budget_limit, time_period}` — as one. */
function modelBudgets(given: NonNullable<KeyFields["model_max_budget"]>): ModelBudgets {
  const out: ModelBudgets = {};
  for (const [model, b] of Object.entries(given))
    out[model] = typeof b === "number" ? { budget_limit: b, time_period: null } : { budget_limit: b.budget_limit, time_period: b.time_period ?? null };
  return out;
}
