--[[
  l2-repair: the tombstones of many events at once, each key at its own event's version (coherence/l2-guard.ts
  replays a page of the event table after Redis restarted, was restored or failed over).

  KEYS     record keys (RedisKeys.authRecord), one per token an event named
  ARGV[1]  TTL in seconds, as l2-invalidate
  ARGV[i+1] the tombstone version for KEYS[i]

  The same rule as l2-invalidate, key by key: a record or tombstone at this version or newer is kept. A token
  named by several events of the page is tombstoned at the highest of their versions, whatever their order.

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
