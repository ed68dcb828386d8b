-- Every deployment cooling down now, with what is left of its cooldown (ms), for a replica that (re)joins or
-- resynchronises (proxy/deployment-health.ts). Ended ones are removed on the way.
-- KEYS[1]: the cluster's cooldown hash. Returns a flat list: id, ms left, id, ms left, ...
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local all = redis.call("HGETALL", KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local left = tonumber(all[i + 1]) - now
  if left > 0 then
    out[#out + 1] = all[i]
    out[#out + 1] = left
  else
    redis.call("HDEL", KEYS[1], all[i])
  end
end
return out
