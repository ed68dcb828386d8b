-- The durable spend ledger. Live, cluster-wide spend and rate counters are in Redis; every
-- replica also queues what it charged and flushes it here in batches.

-- A reset (periodic `budget_duration` reset, /key/{key}/reset_spend, /key/update with `spend`) bumps the
-- generation. Spend charged under an older generation belongs to the period before the reset and is
-- not added to the new one: a flush that raced a reset cannot resurrect the old period's spend.
ALTER TABLE gh_keys ADD COLUMN spend_generation bigint NOT NULL DEFAULT 0;

-- One row per flushed batch: a batch retried after an unknown COMMIT outcome (or by a replica that
-- cannot tell whether its flush landed) is recognised by its id and applied once.
CREATE TABLE gh_spend_batches (
  batch_id   uuid PRIMARY KEY,
  replica_id text NOT NULL,
  requests   integer NOT NULL,
  cost       double precision NOT NULL,
  flushed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gh_spend_batches_flushed_at_idx ON gh_spend_batches (flushed_at);

-- The sweeper finds keys whose budget period ended.
CREATE INDEX gh_keys_budget_reset_at_idx ON gh_keys (budget_reset_at) WHERE budget_reset_at IS NOT NULL;
