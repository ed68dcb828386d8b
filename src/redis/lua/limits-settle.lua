-- Settles one admitted request on every level it was admitted on: releases its reservations and charges
-- what it actually cost. KEYS: five per level, as in limits-reserve.lua (ledger, inflight, reserved,
-- requests, windows).
-- ARGV: request id, actual cost, actual tokens, cancel ("1": a prefetched admission no request used; it is
--       taken out of the rpm count too), then per level the spend generation seen at admission ("" = no ledger).
-- Spend is added only to the generation it was reserved in: a reset in between starts a new period, which
-- this request's cost does not belong to. Never touches an auth record or its TTL (docs/coherence.md #5).
-- Returns, per level, the live spend after the charge, or "" when the level has no live ledger.

local id = ARGV[1]
local cost = ARGV[2]
local actual_tokens = tonumber(ARGV[3])
local cancel = ARGV[4] == '1'
local levels = #KEYS / 5

-- Moves `delta` into the minute `r_bucket` of the windows hash (fields: bucket, current, previous), if
-- that minute is still the current or the previous one.
local function correct(windows, bucket_field, current_field, previous_field, r_bucket, delta)
  local b = tonumber(redis.call('HGET', windows, bucket_field))
  local field = nil
  if b == r_bucket then field = current_field elseif b == r_bucket + 1 then field = previous_field end
  if field then
    local v = tonumber(redis.call('HGET', windows, field) or '0') + delta
    redis.call('HSET', windows, field, math.max(0, v))
  end
end

local reply = {}
for n = 1, levels do
  local k = (n - 1) * 5
  local ledger, inflight, reserved_hash, requests, windows = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local generation = ARGV[4 + n]
  local spend = ''
  local amount = redis.call('HGET', reserved_hash, id)
  if amount then
    local r_cost, r_tokens, r_bucket = string.match(amount, '^(%S+) (%S+) (%S+)$')
    redis.call('HDEL', reserved_hash, id)
    redis.call('ZREM', inflight, id)
    if tonumber(r_cost) ~= 0 then redis.call('HINCRBYFLOAT', reserved_hash, '_total', -tonumber(r_cost)) end
    -- tpm counted the worst case at admission; correct it to the actual tokens in the same minute.
    local delta = actual_tokens - tonumber(r_tokens)
    if delta ~= 0 then correct(windows, 'b', 'c', 'p', tonumber(r_bucket), delta) end
    -- An admission never used does not count as a request (exact log, or the smoothed count).
    if cancel and redis.call('ZREM', requests, id) == 0 then correct(windows, 'rb', 'rc', 'rp', tonumber(r_bucket), -1) end
  end
  if not cancel and generation ~= '' and tonumber(cost) ~= 0 and redis.call('HGET', ledger, 'gen') == generation then
    spend = redis.call('HINCRBYFLOAT', ledger, 'spend', cost)
  end
  reply[n] = spend
end
return reply
