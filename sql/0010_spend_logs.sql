-- Spend logs: one row per request on the OpenAI routes that authenticated with a key and named a model (served,
-- refused by a limit, or failed upstream), written off the request path in batches (src/spendlogs/).
-- Partitioned by day (start_time, UTC): retention drops whole partitions. Partitions are created ahead by every
-- replica's upkeep; a row outside them (a clock far off) lands in the default partition, pruned by DELETE.
-- The primary key holds the partition key, as Postgres requires; request_id is Gatehouse's own UUID, so a batch
-- retried after an unknown outcome inserts nothing twice (ON CONFLICT DO NOTHING).
CREATE TABLE gh_spend_logs (
  request_id        uuid NOT NULL,
  start_time        timestamptz NOT NULL,
  end_time          timestamptz NOT NULL,
  -- The x-request-id the client sent, if any (echoed in the answer; not unique).
  client_request_id text,
  -- The sha256 of the token used (never the key; an old token in its grace has its own), the key's id (the same
  -- across rotations), display name and alias; null for the master key.
  key_hash          text,
  key_id            uuid,
  key_name          text,
  key_alias         text,
  team_id           text,
  user_id           text,
  -- The model as requested, and the deployment that served it: a database model's id, or the config model's upstream name.
  model             text NOT NULL,
  model_id          text,
  upstream_model    text,
  prompt_tokens     integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  total_tokens      integer NOT NULL DEFAULT 0,
  spend             double precision NOT NULL DEFAULT 0,
  latency_ms        double precision NOT NULL,
  -- latency minus the time spent waiting on the upstream: what the gateway itself added.
  overhead_ms       double precision,
  status            smallint NOT NULL,
  error_code        text,
  stream            boolean NOT NULL DEFAULT false,
  replica_id        text NOT NULL,
  -- metadata.tags of the request (LiteLLM's request tags), and the rest of its metadata.
  tags              text[] NOT NULL DEFAULT '{}',
  metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (start_time, request_id)
) PARTITION BY RANGE (start_time);
CREATE TABLE gh_spend_logs_default PARTITION OF gh_spend_logs DEFAULT;
-- Every index is paid on every row written: no index on key_hash (a key's hash is looked up to its key_id first).
CREATE INDEX gh_spend_logs_key_id_idx ON gh_spend_logs (key_id, start_time);
CREATE INDEX gh_spend_logs_team_idx ON gh_spend_logs (team_id, start_time);
CREATE INDEX gh_spend_logs_user_idx ON gh_spend_logs (user_id, start_time);
CREATE INDEX gh_spend_logs_request_idx ON gh_spend_logs (request_id);

-- Daily totals per key, team, user and model, for charts over weeks without scanning raw rows. Maintained by the
-- same statement that inserts the rows, from the rows it actually inserted: a retried batch adds nothing twice.
-- "" stands for "none" (a primary key column cannot be null). Kept when raw rows are dropped by retention.
CREATE TABLE gh_spend_daily (
  day               date NOT NULL,
  key_hash          text NOT NULL,
  team_id           text NOT NULL,
  user_id           text NOT NULL,
  model             text NOT NULL,
  requests          bigint NOT NULL,
  failed_requests   bigint NOT NULL,
  prompt_tokens     bigint NOT NULL,
  completion_tokens bigint NOT NULL,
  spend             double precision NOT NULL,
  PRIMARY KEY (day, key_hash, team_id, user_id, model)
);
CREATE INDEX gh_spend_daily_team_idx ON gh_spend_daily (team_id, day);
CREATE INDEX gh_spend_daily_user_idx ON gh_spend_daily (user_id, day);
