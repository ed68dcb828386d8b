-- Drops a key's live ledger if it belongs to a spend generation older than ARGV[1] (a reset happened
-- that this Redis did not hear of). The next request seeds the ledger again from Postgres.
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen and tonumber(gen) < tonumber(ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
