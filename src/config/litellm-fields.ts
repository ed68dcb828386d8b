/**
 * Every LiteLLM field of a key, team, user and model request, and what Gatehouse does with it: the one list the
 * request schemas take their refusals from, `docs/litellm-migration.md`'s table is checked against, and the field
 * test posts (test/litellm-fields.test.ts). A field is
 * - `enforced`: honoured, on every replica (the note says how, or where it is documented);
 * - `refused`: a 400 naming it, unless its value asks for nothing (null, false, "", [], {}): never accepted and dropped;
 * - `not applicable`: a LiteLLM field that has no meaning here, refused like the others (the note says why).
 */
export type FieldFate = "enforced" | "refused" | "not applicable";

export interface LiteLLMField {
  name: string;
  fate: FieldFate;
  note: string;
}

const enforced = (name: string, note: string): LiteLLMField => ({ name, fate: "enforced", note });
const refused = (name: string, note = "not supported"): LiteLLMField => ({ name, fate: "refused", note });
const notApplicable = (name: string, note: string): LiteLLMField => ({ name, fate: "not applicable", note });

const LIMITS: LiteLLMField[] = [
  enforced("models", "the models it may call"),
  enforced("max_budget", "cluster-wide, reserved before forwarding (docs/limits.md)"),
  enforced("budget_duration", "LiteLLM's spellings, `1mo` as calendar months (docs/keys.md)"),
  enforced("tpm_limit", "cluster-wide (docs/limits.md)"),
  enforced("rpm_limit", "cluster-wide, exact up to 1,000 (docs/limits.md)"),
  enforced("max_parallel_requests", "cluster-wide (docs/limits.md)"),
  enforced("metadata", "kept and shown"),
];

/** /key/generate, /key/update, /key/regenerate. */
export const KEY_FIELDS: LiteLLMField[] = [
  ...LIMITS,
  enforced("key", "a custom key (`sk-` and 32–256 visible characters) on generate; the key addressed on update"),
  enforced("key_alias", "unique, as in LiteLLM"),
  enforced("duration", "the key expires this long after its creation"),
  enforced("user_id", "the key's user (docs/users.md)"),
  enforced("team_id", "the key's team; it must exist (docs/teams.md)"),
  enforced("blocked", "refused on every replica at once"),
  enforced("spend", "update only: sets the period's spend, in a new spend generation"),
  enforced("grace_period", "regenerate only: the old key works this long after the commit, on every replica"),
  enforced("new_key", "regenerate only: a custom new key"),
  enforced("model_max_budget", "per model, with its own period; spend kept per key and model (docs/keys.md)"),
  enforced("model_rpm_limit", "per model, cluster-wide (docs/keys.md)"),
  enforced("model_tpm_limit", "per model, cluster-wide (docs/keys.md)"),
  enforced("aliases", "a model name the key's clients may ask for → the served model (docs/keys.md)"),
  enforced("enforced_params", "a request lacking one is a 400 naming it (docs/keys.md)"),
  enforced("tags", "kept, and copied into the key's spend logs"),
  enforced("soft_budget", "crossing it is told once per period: log, metric, signed webhook (docs/keys.md)"),
  refused("config"),
  refused("permissions"),
  refused("allowed_cache_controls", "Gatehouse has no response cache"),
  refused("guardrails", "Gatehouse runs no guardrails"),
  refused("prompts", "Gatehouse keeps no prompts"),
  refused("key_type", "every key may call the model API only; the master key administers"),
  refused("allowed_routes", "every key may call the model API only"),
  refused("allowed_passthrough_routes", "Gatehouse has no pass-through routes"),
  refused("object_permission", "no MCP servers, vector stores or agents"),
  refused("budget_id", "no budget tiers: set the limits on the key"),
  refused("budget_limits", "one budget and period per key (and per model)"),
  refused("budget_fallbacks"),
  refused("rpm_limit_type", "limits are always exact, cluster-wide"),
  refused("tpm_limit_type", "limits are always exact, cluster-wide"),
  refused("temp_budget_increase"),
  refused("temp_budget_expiry"),
  refused("auto_rotate", "rotate with /key/{key}/regenerate"),
  refused("rotation_interval", "rotate with /key/{key}/regenerate"),
  refused("access_group_ids", "no access groups"),
  notApplicable("organization_id", "no organizations"),
  notApplicable("agent_id", "no agents"),
  notApplicable("send_invite_email", "Gatehouse sends no email"),
  notApplicable("new_master_key", "the master key is configuration, not a key field"),
];

/** /team/new, /team/update. */
export const TEAM_FIELDS: LiteLLMField[] = [
  ...LIMITS,
  enforced("team_id", "never reused once deleted"),
  enforced("team_alias", "shown"),
  enforced("blocked", "the team's keys are refused on every replica at once"),
  enforced("members_with_roles", "members, their roles and `max_budget_in_team` (docs/teams.md)"),
  enforced("soft_budget", "crossing it is told once per period: log, metric, signed webhook (docs/keys.md)"),
  refused("model_aliases"),
  refused("tags"),
  refused("guardrails", "Gatehouse runs no guardrails"),
  refused("prompts", "Gatehouse keeps no prompts"),
  refused("object_permission", "no MCP servers, vector stores or agents"),
  refused("team_member_permissions"),
  refused("model_rpm_limit", "per-model limits are a key's (docs/keys.md)"),
  refused("model_tpm_limit", "per-model limits are a key's (docs/keys.md)"),
  refused("team_member_budget", "set `max_budget_in_team` per member"),
  refused("team_member_rpm_limit"),
  refused("team_member_tpm_limit"),
  refused("budget_id", "no budget tiers: set the limits on the team"),
  refused("metadata_tags"),
  notApplicable("organization_id", "no organizations"),
];

/** /user/new, /user/update. */
export const USER_FIELDS: LiteLLMField[] = [
  ...LIMITS,
  enforced("user_id", "never reused once deleted"),
  enforced("user_email", "shown"),
  enforced("user_alias", "shown"),
  enforced("user_role", "kept and shown (the master key administers)"),
  enforced("auto_create_key", "new only: create a key of the user's (default true)"),
  refused("teams", "add members with /team/member_add"),
  refused("key_alias", "set it on the key with /key/update"),
  refused("duration", "set it on the key with /key/update"),
  refused("aliases", "a key's (docs/keys.md)"),
  refused("config"),
  refused("permissions"),
  refused("allowed_cache_controls", "Gatehouse has no response cache"),
  refused("guardrails", "Gatehouse runs no guardrails"),
  refused("prompts", "Gatehouse keeps no prompts"),
  refused("tags"),
  refused("object_permission", "no MCP servers, vector stores or agents"),
  refused("model_max_budget", "per-model limits are a key's (docs/keys.md)"),
  refused("model_rpm_limit", "per-model limits are a key's (docs/keys.md)"),
  refused("model_tpm_limit", "per-model limits are a key's (docs/keys.md)"),
  refused("soft_budget", "a key's soft budget is told (docs/keys.md); a user's is not yet"),
  refused("budget_id", "no budget tiers: set the limits on the user"),
  notApplicable("organization_id", "no organizations"),
  notApplicable("send_invite_email", "Gatehouse sends no email"),
  notApplicable("sso_user_id", "no SSO: the admin UI logs in with the master key"),
];

/** A model's `litellm_params` (config file `model_list` and /model/new, /model/update). */
export const MODEL_FIELDS: LiteLLMField[] = [
  enforced("model", "`<provider>/<model>` for openai, azure, anthropic, mock (docs/providers.md)"),
  enforced("api_base", "the provider's default when unset (or `OPENAI_API_BASE` / `ANTHROPIC_API_BASE`, as LiteLLM reads them); credentials in it are refused (docs/models.md)"),
  enforced("api_key", "sealed at rest when added through the API, never shown"),
  enforced("api_version", "Azure's api-version, Anthropic's anthropic-version"),
  enforced("drop_params", "parameters the provider has no place for are dropped and named in a header"),
  enforced("timeout", "the upstream read timeout, seconds"),
  enforced("input_cost_per_token", "pricing, charged against budgets"),
  enforced("output_cost_per_token", "pricing, charged against budgets"),
  enforced("cache_read_input_token_cost", "pricing of prompt-cache reads"),
  enforced("cache_creation_input_token_cost", "pricing of prompt-cache writes"),
  enforced("weight", "its share of its model's traffic (docs/routing.md)"),
  enforced("order", "its priority among its model's deployments (docs/routing.md)"),
  enforced("rpm", "the deployment's requests a minute, cluster-wide (docs/routing.md)"),
  enforced("tpm", "the deployment's tokens a minute, cluster-wide (docs/routing.md)"),
  enforced("max_parallel_requests", "the deployment's calls in flight, cluster-wide (docs/routing.md)"),
  refused("stream_timeout", "one read timeout serves streams and answers (router_settings.stream_timeout covers streams)"),
  refused("aws_region_name", "no Bedrock provider"),
  refused("vertex_project", "no Vertex provider"),
  refused("vertex_location", "no Vertex provider"),
  refused("max_retries", "retries are router_settings.num_retries, one budget per request (docs/routing.md)"),
  refused("tags", "no tag-based routing"),
];

/** The names the request schemas refuse (everything not enforced). */
export function refusedNames(fields: readonly LiteLLMField[]): string[] {
  return fields.filter((f) => f.fate !== "enforced").map((f) => f.name);
}
