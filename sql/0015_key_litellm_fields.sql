-- LiteLLM's per-key fields Gatehouse honours (docs/keys.md, "LiteLLM's per-key fields"): tags (copied into the
-- key's spend logs), model aliases, parameters every request must carry, a soft budget (reported once per budget
-- period when crossed), and per-model budgets and rate limits, kept in LiteLLM's own shapes.
ALTER TABLE gh_keys
  ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
  ADD COLUMN aliases jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN enforced_params text[] NOT NULL DEFAULT '{}',
  ADD COLUMN soft_budget float8,
  ADD COLUMN model_max_budget jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN model_rpm_limit jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN model_tpm_limit jsonb NOT NULL DEFAULT '{}';

ALTER TABLE gh_teams ADD COLUMN soft_budget float8;

-- A key's spend on one model, for that model's budget (model_max_budget): its own period and generation, like a
-- key's own spend (sql/0004). A row exists once the model was charged; none means nothing spent.
CREATE TABLE gh_key_model_spend (
  key_id uuid NOT NULL REFERENCES gh_keys (key_id) ON DELETE CASCADE,
  model text NOT NULL,
  spend float8 NOT NULL DEFAULT 0,
  spend_generation bigint NOT NULL DEFAULT 0,
  budget_reset_at timestamptz,
  PRIMARY KEY (key_id, model)
);
CREATE INDEX gh_key_model_spend_reset ON gh_key_model_spend (budget_reset_at) WHERE budget_reset_at IS NOT NULL;
