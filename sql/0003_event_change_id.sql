-- Each change's event carries an id chosen by the writer before COMMIT. If the connection dies during
-- COMMIT, the writer looks for this id to learn whether the change landed (docs/coherence.md #3).
ALTER TABLE gh_key_events ADD COLUMN change_id uuid;
CREATE UNIQUE INDEX gh_key_events_change_id_idx ON gh_key_events (change_id) WHERE change_id IS NOT NULL;
