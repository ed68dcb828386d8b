-- The admin UI's sessions and the replica registry its cluster page reads (docs/admin-ui.md).

-- A session made by logging in with the master key. The cookie holds a random token; only its sha256 is stored.
-- Every replica reads this table on every UI call, so a logout on one replica is a logout on all of them.
-- master_key_hash is the sha256 of the master key that logged in: a replica started with another master key
-- deletes every session it did not make, and refuses them meanwhile (a rotated master key ends every session).
CREATE TABLE gh_ui_sessions (
  session_hash    text PRIMARY KEY,
  csrf_token      text NOT NULL,
  master_key_hash text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL
);
CREATE INDEX gh_ui_sessions_expires_at ON gh_ui_sessions (expires_at);

-- Every replica writes its row every few seconds: what it last applied, its listener, lags and breakers.
-- Rows whose heartbeat stopped are shown as gone, and removed after a day.
CREATE TABLE gh_replicas (
  replica_id   text PRIMARY KEY,
  host         text NOT NULL,
  pid          integer NOT NULL,
  version      text NOT NULL,
  started_at   timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL,
  -- The newest event id in the database just before the status was taken: "behind by N" is measured against it.
  latest_event_id bigint NOT NULL,
  status       jsonb NOT NULL
);

-- The keys page searches aliases by prefix over any number of keys.
CREATE INDEX gh_keys_key_alias_prefix ON gh_keys (key_alias text_pattern_ops);
