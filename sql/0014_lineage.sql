-- The database lineage token: which history of this database a replica has applied. Together with the server's
-- system identifier and its WAL timeline it tells a replica that the database now answering is not the one whose
-- events, versions and cache records it holds (a promoted standby, a restore): event ids and versions are only
-- compared within one lineage. Written once here; `gatehouse lineage renew` replaces it (after restoring a backup
-- onto a server with the same system identifier and timeline, say), which every replica treats as a new history.
CREATE TABLE gh_lineage (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  token uuid NOT NULL DEFAULT gen_random_uuid(),
  renewed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gh_lineage DEFAULT VALUES;
