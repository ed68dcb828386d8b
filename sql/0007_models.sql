-- Models added through the API (/model/new), served beside the config file's. Upstream credentials are sealed
-- (AES-256-GCM, src/models/credential-seal.ts): `api_key_sealed` is never readable without the salt key, and
-- `params` (litellm_params) never holds the key. Every change commits one event naming "models:all": each
-- replica drops its database models from memory at once, credentials included, and reads them again.
CREATE TABLE gh_models (
  model_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  model_name     text NOT NULL CHECK (length(model_name) BETWEEN 1 AND 256),
  params         jsonb NOT NULL,
  api_key_sealed text,
  model_info     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  version        bigint NOT NULL DEFAULT nextval('gh_key_version_seq')
);
