-- Upgrading a database that holds spend logs: the index builds below hold new spend-log rows back until they commit
-- (replicas keep their rows queued or journaled meanwhile, and write them after); nothing else waits.
-- Most requests have no team or no user: their rows need no entry in those indexes (each entry is paid on every
-- row written). Lookups by team or user (WHERE team_id = $1) use the partial indexes all the same.
DROP INDEX gh_spend_logs_team_idx;
DROP INDEX gh_spend_logs_user_idx;
CREATE INDEX gh_spend_logs_team_idx ON gh_spend_logs (team_id, start_time) WHERE team_id IS NOT NULL;
CREATE INDEX gh_spend_logs_user_idx ON gh_spend_logs (user_id, start_time) WHERE user_id IS NOT NULL;
-- A lookup by request id also matches the id the client sent (x-request-id): indexed only where there is one.
CREATE INDEX gh_spend_logs_client_request_idx ON gh_spend_logs (client_request_id) WHERE client_request_id IS NOT NULL;
