-- Users: keys refer to a user by user_id. A user's record (models, deleted; budgets and limits stored for the
-- admission of every level) is cached on its own (L1/L2 under "user:<user_id>") and invalidated by the user's own
-- events, like a team's. A key may name a user_id that has no row (LiteLLM's implicit users): no user rules apply
-- to it until the user is created, and creating one is an event, since a replica may have cached its absence.
CREATE TABLE gh_users (
  user_id               text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 256),
  user_email            text,
  user_alias            text,
  user_role             text NOT NULL DEFAULT 'internal_user',
  models                text[] NOT NULL DEFAULT '{}',
  max_budget            double precision,
  spend                 double precision NOT NULL DEFAULT 0,
  budget_duration       text,
  budget_reset_at       timestamptz,
  tpm_limit             bigint,
  rpm_limit             bigint,
  max_parallel_requests integer,
  metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Like a team, a deleted user keeps its row and its id is never reused.
  deleted_at            timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  version               bigint NOT NULL DEFAULT nextval('gh_key_version_seq')
);
