-- Virtual keys. Postgres is the source of truth (docs/coherence.md); every cache holds a copy of a row.
-- Only the sha256 hex of a key is stored: `token` is that hash.

-- One sequence for every key version in the cluster: versions only ever grow, even across delete and
-- re-create of the same token, so an L2 tombstone written for version N blocks any fill of a row read
-- before it (docs/coherence.md #5), and the version works as a fencing token (docs/coherence.md #4).
CREATE SEQUENCE gh_key_version_seq;

CREATE TABLE gh_keys (
  token                 text PRIMARY KEY CHECK (token ~ '^[0-9a-f]{64}$'),
  -- Stable identity of a key across rotations: the spend ledger and deprecated keys hang off it.
  key_id                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  key_alias             text,
  key_name              text NOT NULL,
  models                text[] NOT NULL DEFAULT '{}',
  max_budget            double precision CHECK (max_budget IS NULL OR max_budget >= 0),
  spend                 double precision NOT NULL DEFAULT 0,
  budget_duration       text,
  budget_reset_at       timestamptz,
  tpm_limit             bigint CHECK (tpm_limit IS NULL OR tpm_limit >= 0),
  rpm_limit             bigint CHECK (rpm_limit IS NULL OR rpm_limit >= 0),
  max_parallel_requests integer CHECK (max_parallel_requests IS NULL OR max_parallel_requests >= 0),
  metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
  user_id               text,
  team_id               text,
  expires               timestamptz,
  blocked               boolean NOT NULL DEFAULT false,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  version               bigint NOT NULL DEFAULT nextval('gh_key_version_seq')
);

-- LiteLLM enforces unique aliases; /key/delete by key_aliases relies on it.
CREATE UNIQUE INDEX gh_keys_key_alias_idx ON gh_keys (key_alias) WHERE key_alias IS NOT NULL;
CREATE INDEX gh_keys_user_id_idx ON gh_keys (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX gh_keys_team_id_idx ON gh_keys (team_id) WHERE team_id IS NOT NULL;
CREATE INDEX gh_keys_created_at_idx ON gh_keys (created_at, token);
