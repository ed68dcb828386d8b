import { parseDuration } from "../config/duration.js";
import { ALL_PROXY_MODELS } from "../auth/auth-record.js";
import { BadRequestError } from "../errors/errors.js";
import type { KeyPatch } from "../store/key-store.js";
import type { KeyFields } from "./key-schemas.js";

/** Request fields → column patch. Durations become database-clock timestamps in the statement. */
export function toKeyPatch(req: KeyFields, servedModels: ReadonlySet<string>): KeyPatch {
  const patch: KeyPatch = {};
  if (req.models !== undefined) {
    const unknown = req.models.filter((m) => m !== ALL_PROXY_MODELS && !servedModels.has(m));
    if (unknown.length > 0) {
      throw new BadRequestError(`unknown model(s): ${unknown.join(", ")}; this gateway serves ${[...servedModels].join(", ") || "no models"}`, "models", "model_not_found");
    }
    patch.models = req.models;
  }
  if (req.key_alias !== undefined) patch.key_alias = req.key_alias;
  if (req.max_budget !== undefined) patch.max_budget = req.max_budget;
  if (req.budget_duration !== undefined) {
    patch.budget_duration = req.budget_duration;
    patch.budget_duration_ms = req.budget_duration === null ? null : parseDuration(req.budget_duration);
  }
  if (req.tpm_limit !== undefined) patch.tpm_limit = req.tpm_limit;
  if (req.rpm_limit !== undefined) patch.rpm_limit = req.rpm_limit;
  if (req.max_parallel_requests !== undefined) patch.max_parallel_requests = req.max_parallel_requests;
  if (req.metadata !== undefined) patch.metadata = req.metadata ?? {};
  if (req.user_id !== undefined) patch.user_id = req.user_id;
  if (req.team_id !== undefined) patch.team_id = req.team_id;
  if (req.duration !== undefined) patch.expires_in_ms = req.duration === null ? null : parseDuration(req.duration);
  if (req.blocked !== undefined) patch.blocked = req.blocked;
  return patch;
}
