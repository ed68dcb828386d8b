import type { KeyRow } from "../store/key-store.js";

/** The LiteLLM-shaped JSON of a key row. The plaintext key is never part of it. */
export function keyView(row: KeyRow) {
  return {
    token: row.token,
    key_id: row.key_id,
    key_name: row.key_name,
    key_alias: row.key_alias,
    models: row.models,
    max_budget: row.max_budget,
    spend: row.spend,
    spend_generation: row.spend_generation,
    budget_duration: row.budget_duration,
    budget_reset_at: row.budget_reset_at,
    tpm_limit: row.tpm_limit,
    rpm_limit: row.rpm_limit,
    max_parallel_requests: row.max_parallel_requests,
    metadata: row.metadata,
    user_id: row.user_id,
    team_id: row.team_id,
    expires: row.expires,
    blocked: row.blocked,
    created_at: row.created_at,
    updated_at: row.updated_at,
    version: row.version,
    tags: row.tags,
    aliases: row.aliases,
    enforced_params: row.enforced_params,
    soft_budget: row.soft_budget,
    model_max_budget: row.model_max_budget,
    model_rpm_limit: row.model_rpm_limit,
    model_tpm_limit: row.model_tpm_limit,
  };
}
