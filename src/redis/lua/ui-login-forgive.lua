-- Gives back one attempt counted by ui-login-attempt.lua that was no wrong guess (the master key was right, or
-- the gateway failed before it could tell): never below zero, never creating the counter, keeping its expiry.
-- KEYS[1]: the address's counter.
-- Returns the count left.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count <= 0 then return 0 end
return redis.call('DECR', KEYS[1])
