-- Settles one admitted request: releases its reservation and charges what it actually cost.
-- KEYS as in limits-reserve.lua (1 ledger, 2 inflight, 3 reserved, 4 requests, 5 windows).
-- ARGV: request id, actual cost, actual tokens, spend generation seen at admission ("" = no ledger),
--       cancel ("1": a prefetched admission no request used; it is taken out of the rpm count too).
-- Spend is added only to the generation it was reserved in: a reset in between starts a new period,
-- which this request's cost does not belong to. Never touches an auth record or its TTL (docs/coherence.md #5).
-- Returns the live spend after the charge, or "" when there is no live ledger for the key.

local id = ARGV[1]
local cancel = ARGV[5] == '1'
local amount = redis.call('HGET', KEYS[3], id)
if amount then
  local r_cost, r_tokens, r_bucket = string.match(amount, '^(%S+) (%S+) (%S+)$')
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  if tonumber(r_cost) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[3], '_total', -tonumber(r_cost)) end
  -- tpm counted the worst case at admission; correct it to the actual tokens in the same minute.
  local delta = tonumber(ARGV[3]) - tonumber(r_tokens)
  if delta ~= 0 then
    local b = tonumber(redis.call('HGET', KEYS[5], 'b'))
    local bucket = tonumber(r_bucket)
    local field = nil
    if b == bucket then field = 'c' elseif b == bucket + 1 then field = 'p' end
    if field then
      local v = tonumber(redis.call('HGET', KEYS[5], field) or '0') + delta
      redis.call('HSET', KEYS[5], field, math.max(0, v))
    end
  end
  if cancel then
    -- The admission was never used: it does not count as a request (exact log, or the smoothed count).
    if redis.call('ZREM', KEYS[4], id) == 0 then
      local rb = tonumber(redis.call('HGET', KEYS[5], 'rb'))
      local bucket = tonumber(r_bucket)
      local field = nil
      if rb == bucket then field = 'rc' elseif rb == bucket + 1 then field = 'rp' end
      if field then
        local v = tonumber(redis.call('HGET', KEYS[5], field) or '0') - 1
        redis.call('HSET', KEYS[5], field, math.max(0, v))
      end
    end
    return ''
  end
end
if cancel then return '' end

if ARGV[4] ~= '' and tonumber(ARGV[2]) ~= 0 and redis.call('HGET', KEYS[1], 'gen') == ARGV[4] then
  return redis.call('HINCRBYFLOAT', KEYS[1], 'spend', ARGV[2])
end
return ''
