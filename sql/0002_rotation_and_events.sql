-- Key rotation with grace periods, the invalidation event log, and idempotent admin writes.

-- A deprecated key keeps authenticating as its key's active record until revoke_at (docs/coherence.md #1).
-- key_id is the key's stable identity; active_token is re-pointed to the newest token on every rotation
-- so the chain old → older → newest always resolves in one step.
CREATE TABLE gh_deprecated_keys (
  token        text PRIMARY KEY CHECK (token ~ '^[0-9a-f]{64}$'),
  key_id       uuid NOT NULL REFERENCES gh_keys (key_id) ON DELETE CASCADE,
  active_token text NOT NULL,
  key_name     text NOT NULL,
  revoke_at    timestamptz NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gh_deprecated_keys_key_id_idx ON gh_deprecated_keys (key_id);
CREATE INDEX gh_deprecated_keys_revoke_at_idx ON gh_deprecated_keys (revoke_at);

-- Every key change writes one row here in its own transaction and NOTIFYs its id (docs/coherence.md #6).
-- Ids are taken under a transaction-level advisory lock held to COMMIT, so ids become visible in id
-- order and "replay everything after the last id I applied" never skips a slower transaction.
-- `version` is the L2 tombstone version for every token listed.
CREATE TABLE gh_key_events (
  id         bigserial PRIMARY KEY,
  kind       text NOT NULL,
  tokens     text[] NOT NULL,
  version    bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Events at or below pruned_through are gone: a replica whose last applied id is older cannot replay
-- and must drop its whole L1.
CREATE TABLE gh_event_watermark (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO gh_event_watermark DEFAULT VALUES;

-- The first result of a request made with an Idempotency-Key, written in the same transaction as the
-- change. The response (which holds a new plaintext key) is stored encrypted with a key derived from the
-- master key and the Idempotency-Key, never in plaintext.
CREATE TABLE gh_idempotency (
  scope         text NOT NULL,
  idem_key      text NOT NULL,
  fingerprint   text NOT NULL,
  response      bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, idem_key)
);
CREATE INDEX gh_idempotency_created_at_idx ON gh_idempotency (created_at);
