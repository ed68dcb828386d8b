--[[
  l2-invalidate: replace an auth record with a tombstone for a version.

  KEYS[1]  the record key (RedisKeys.authRecord)
  ARGV[1]  tombstone version: the version the change committed (or a fresh sequence value on delete)
  ARGV[2]  TTL in seconds: long enough to outlive any fill still in flight

  Fills with a version below the tombstone are refused by l2-fill; a fill of the row as committed by the
  change (same version) is allowed, so the fresh record can be cached at once. Every replica applies
  every event, so the same tombstone arrives several times: a record or tombstone at this version or
  newer is already at least as fresh, and is kept.

  Returns 1 when written, 0 when the same or a newer version was already there.
]]
local current = redis.call('GET', KEYS[1])
if current then
  local v = tonumber(string.match(current, '^(%d+)|'))
  if v and v >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|', 'EX', ARGV[2])
return 1
