--[[
  l2-invalidate: replace auth records with tombstones for a version.

  KEYS     the record keys (RedisKeys.authRecord) of every token hash one change made stale: one round
           trip per event, not one per token (a rotation names at least two)
  ARGV[1]  tombstone version: the version the change committed (or a fresh sequence value on delete)
  ARGV[2]  TTL in seconds: long enough to outlive any fill still in flight

  Fills with a version below the tombstone are refused by l2-fill; a fill of the row as committed by the
  change (same version) is allowed, so the fresh record can be cached at once. Every replica applies
  every event, so the same tombstone arrives several times: a record or tombstone at this version or
  newer is already at least as fresh, and is kept.

  Returns how many tombstones were written (keys already at the same or a newer version are kept).
]]
local version = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  local v = current and tonumber(string.match(current, '^(%d+)|'))
  if not (v and v >= version) then
    redis.call('SET', KEYS[i], ARGV[1] .. '|', 'EX', ARGV[2])
    written = written + 1
  end
end
return written
