-- Teams: keys refer to a team by team_id; a team's state (blocked, deleted, models, limits) applies to every key
-- in it. Replicas cache a team's record on its own (L1/L2 under "team:<team_id>"), versioned from the same
-- sequence as keys, and one event per team change invalidates it: no replica walks a team's keys.
CREATE TABLE gh_teams (
  team_id               text PRIMARY KEY CHECK (length(team_id) BETWEEN 1 AND 256),
  team_alias            text UNIQUE,
  models                text[] NOT NULL DEFAULT '{}',
  max_budget            double precision,
  spend                 double precision NOT NULL DEFAULT 0,
  budget_duration       text,
  budget_reset_at       timestamptz,
  tpm_limit             bigint,
  rpm_limit             bigint,
  max_parallel_requests integer,
  blocked               boolean NOT NULL DEFAULT false,
  metadata              jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- [{user_id, user_email?, role: "admin" | "user"}], as LiteLLM's members_with_roles.
  members_with_roles    jsonb NOT NULL DEFAULT '[]'::jsonb,
  -- A deleted team stays as a row: its keys are gone, and its team_id is never given to another team, so a
  -- key record cached before the delete can never pass a new team's check.
  deleted_at            timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  version               bigint NOT NULL DEFAULT nextval('gh_key_version_seq')
);
