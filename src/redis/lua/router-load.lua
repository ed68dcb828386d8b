-- The load of a model's deployments as the whole cluster sees it, for the routing strategies that read it
-- (proxy/deployment-load.ts): least-busy reads calls in flight, usage-based routing tokens this minute.
-- KEYS: two per deployment, the inflight ZSET and the windows HASH of its limits level (limits-reserve.lua,
-- which records every admitted attempt there; limits-settle.lua removes it when the attempt ends).
-- Returns a flat list: per deployment, calls in flight (reservations not yet expired), tokens in the sliding minute.
local WINDOW = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = math.floor(now / WINDOW)
local into = now % WINDOW
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i], now, '+inf')
  local v = redis.call('HMGET', KEYS[i + 1], 'b', 'c', 'p')
  local b, used = tonumber(v[1]), 0
  if b == bucket then
    used = (tonumber(v[3]) or 0) * (1 - into / WINDOW) + (tonumber(v[2]) or 0)
  elseif b == bucket - 1 then
    used = (tonumber(v[2]) or 0) * (1 - into / WINDOW)
  end
  out[#out + 1] = tostring(math.floor(used))
end
return out
