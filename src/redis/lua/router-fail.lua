-- One failed attempt on a deployment, counted for the whole cluster (proxy/deployment-health.ts).
-- KEYS[1]: the deployment's failure counter; KEYS[2]: the cluster's cooldown hash (deployment id -> until, ms of
-- this server's clock).
-- ARGV[1]: deployment id; ARGV[2]: failures allowed within the window; ARGV[3]: cooldown (ms); ARGV[4]: window (ms);
-- ARGV[5]: the channel cooldowns are announced on.
-- Returns {failures in the window, cooldown left (ms; 0 when this failure started none)}. Only the failure that
-- crosses the allowance starts a cooldown, once; it is announced with what is left of it, which every replica
-- holds against its own clock (no clock is compared across machines).
local failures = redis.call("INCR", KEYS[1])
if failures == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[4]) end
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cooling_until = tonumber(redis.call("HGET", KEYS[2], ARGV[1]) or "0")
if cooling_until > now then return {failures, cooling_until - now} end
if failures <= tonumber(ARGV[2]) then return {failures, 0} end
local cooldown = tonumber(ARGV[3])
redis.call("HSET", KEYS[2], ARGV[1], now + cooldown)
-- A new window for the deployment once its cooldown ends: its old failures are not held against it again.
redis.call("DEL", KEYS[1])
redis.call("PUBLISH", ARGV[5], ARGV[1] .. " " .. cooldown)
return {failures, cooldown}
