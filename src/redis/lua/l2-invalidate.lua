--[[
  l2-invalidate: replace auth records with tombstones, each at its own version.

  KEYS      record keys (RedisKeys.authRecord): every token hash one change made stale (the event path, one
            round trip per event, not one per token), or those of a page of events (the L2 repair replaying the
            event table after Redis restarted, was restored or failed over: coherence/l2-guard.ts)
  ARGV[1]   TTL in seconds: long enough to outlive any fill still in flight
  ARGV[i+1] the tombstone version for KEYS[i]: the version its change committed (or a fresh sequence value on
            delete)

  Fills with a version below the tombstone are refused by l2-fill; a fill of the row as committed by the
  change (same version) is allowed, so the fresh record can be cached at once. Every replica applies every
  event, so the same tombstone arrives several times: a record or tombstone at this version or newer is already
  at least as fresh, and is kept. A token named twice in one call ends at the highest of its versions, whatever
  their order.

  Returns how many tombstones were written.
]]
local written = 0
for i = 1, #KEYS do
  local version = tonumber(ARGV[i + 1])
  local current = redis.call('GET', KEYS[i])
  local v = current and tonumber(string.match(current, '^(%d+)|'))
  if not (v and v >= version) then
    redis.call('SET', KEYS[i], ARGV[i + 1] .. '|', 'EX', ARGV[1])
    written = written + 1
  end
end
return written
