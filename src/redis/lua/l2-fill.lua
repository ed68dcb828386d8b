--[[
  l2-fill: store an auth record in L2 unless something newer is already there.

  KEYS[1]  the record key (RedisKeys.authRecord)
  ARGV[1]  version of the row the record was read from (gh_key_version_seq value)
  ARGV[2]  the record: its MAC, '|', its JSON (auth/l2-cache.ts; the script does not read it)
  ARGV[3]  TTL in seconds (memory hygiene only; validity is never a TTL, docs/coherence.md #2)

  Stored value: "<version>|<mac>|<json>" for a record, "<version>|" for a tombstone.
  A fill that read the database before an invalidation carries an older version than the tombstone the
  invalidation wrote, so it cannot land after it (docs/coherence.md #5, LiteLLM #25553).

  Returns 1 when stored, 0 when a newer version or tombstone was there.
]]
local current = redis.call('GET', KEYS[1])
if current then
  local v = tonumber(string.match(current, '^(%d+)|'))
  if v and v > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
