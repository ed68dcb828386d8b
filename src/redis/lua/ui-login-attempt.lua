-- One admin UI login attempt from a client address (auth/login-throttle.ts), counted before the master key is
-- checked, so guesses sent at once cannot all pass under the limit together; an attempt whose key was right is
-- given back by ui-login-forgive.lua. The window is fixed: it starts at the first attempt counted and does not
-- move while the address keeps trying.
-- KEYS[1]: the address's counter (a string holding an integer; it expires with its window).
-- ARGV[1]: attempts allowed per window, ARGV[2]: the window, ms.
-- Returns {1, count, ms left in the window} when counted, {0, count, ms left} when refused (nothing changes then).
local limit = tonumber(ARGV[1])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= limit then
  local left = redis.call('PTTL', KEYS[1])
  -- A counter without an expiry would refuse the address forever: give it its window.
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, count, left}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, count, redis.call('PTTL', KEYS[1])}
