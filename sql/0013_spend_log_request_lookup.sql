-- A lookup by request id no longer needs an index of its own for ids Gatehouse makes: they are UUIDv7, whose
-- first 48 bits are the request's start in milliseconds, so the primary key (start_time, request_id) finds the
-- row within a few seconds of that time. One index entry fewer for every row written. Only older rows, whose ids
-- were random (version 4), keep an entry, in a partial index that new rows do not enter.
-- Upgrading a database that holds spend logs: the index build below holds new spend-log rows back until it
-- commits (replicas keep their rows queued or journaled meanwhile, and write them after); nothing else waits.
DROP INDEX gh_spend_logs_request_idx;
CREATE INDEX gh_spend_logs_random_request_idx ON gh_spend_logs (request_id) WHERE substr(request_id::text, 15, 1) <> '7';
