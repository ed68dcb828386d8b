-- Admits one request against one key's limits, for every replica at once.
-- Check and reservation are one atomic step, so concurrent requests cannot all pass the check before
-- any of them is counted (LiteLLM #34732). Time is Redis's clock: one clock for every replica.
--
-- KEYS[1] ledger    HASH  spend (current budget period), gen (spend generation, see sql/0004)
-- KEYS[2] inflight  ZSET  request id -> expiry (ms); a dead replica's reservations expire
-- KEYS[3] reserved  HASH  request id -> "cost tokens bucket"; field _total = sum of reserved cost
-- KEYS[4] requests  ZSET  request id -> admission time (ms): the exact sliding minute for rpm ≤ 1000
-- KEYS[5] windows   HASH  b, c, p: current minute, its tokens, the previous minute's tokens (tpm);
--                         rb, rc, rp: the same in requests, for rpm > 1000
-- ARGV: request id, worst-case cost, worst-case tokens, max_budget, rpm, tpm, max_parallel,
--       reservation ttl ms, ledger ttl ms, seed spend, seed generation (limits and seed may be ""),
--       hold ms: for an admission prefetched ahead of its request (src/limits/admission-prefetcher.ts),
--       how long it may wait for one; its rpm log entry is dated that much later, so the request it
--       admits is counted for a whole minute from whenever it is used ("" or 0 for a request at hand)
--
-- Returns {"ok", gen, spend, rpm remaining, rpm reset ms, tpm remaining, tpm reset ms, bucket,
-- budget left, parallel slots left} (what is left after this admission; "" for a limit the key does not
-- have) or {"seed"} (the ledger must be seeded from Postgres first) or {refusal, detail}.

local WINDOW = 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local id = ARGV[1]
local cost = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local max_budget = tonumber(ARGV[4])
local rpm = tonumber(ARGV[5])
local tpm = tonumber(ARGV[6])
local max_parallel = tonumber(ARGV[7])
local reservation_ttl = tonumber(ARGV[8])
local ledger_ttl = tonumber(ARGV[9])
local seed_spend = tonumber(ARGV[10])
local hold = tonumber(ARGV[12]) or 0

-- Release reservations whose replica never settled them (bounded work per call).
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
if #expired > 0 then
  local amounts = redis.call('HMGET', KEYS[3], unpack(expired))
  local freed = 0
  for i = 1, #amounts do
    if amounts[i] then freed = freed + tonumber(string.match(amounts[i], '^(%S+)')) end
  end
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
  if freed ~= 0 then redis.call('HINCRBYFLOAT', KEYS[3], '_total', -freed) end
end

local reserved = tonumber(redis.call('HGET', KEYS[3], '_total') or '0')
if reserved < 1e-12 then reserved = 0 end

local spend, gen = nil, ''
local ledger = redis.call('HMGET', KEYS[1], 'spend', 'gen')
if ledger[1] then
  spend = tonumber(ledger[1])
  gen = ledger[2] or ''
elseif seed_spend then
  redis.call('HSET', KEYS[1], 'spend', ARGV[10], 'gen', ARGV[11])
  spend = seed_spend
  gen = ARGV[11]
end

if max_budget then
  if not spend then return {'seed'} end
  if spend >= max_budget then return {'budget', tostring(spend)} end
  -- Budget is left, but requests in flight have reserved it all: come back when one settles.
  if spend + reserved >= max_budget then return {'budget_reserved', tostring(spend)} end
end

local parallel_left = ''
if max_parallel then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max_parallel then return {'parallel', tostring(n)} end
  parallel_left = tostring(max_parallel - n - 1)
end

-- A sliding minute approximated from two fixed minutes (the previous one weighted by how much of it
-- still overlaps the window), so there is no 2x burst at a minute boundary. `fields` name the current
-- minute, its count and the previous minute's count in KEYS[5]. Returns count so far, current, previous,
-- and the wait (ms) until `limit` admits again (0 when it admits now).
local bucket = math.floor(now / WINDOW)
local into = now % WINDOW
local function smoothed(fields, limit)
  local v = redis.call('HMGET', KEYS[5], fields[1], fields[2], fields[3])
  local b, c, p = tonumber(v[1]), 0, 0
  if b == bucket then
    c, p = tonumber(v[2]) or 0, tonumber(v[3]) or 0
  elseif b == bucket - 1 then
    p = tonumber(v[2]) or 0
  end
  local used = p * (1 - into / WINDOW) + c
  if used < limit then return used, c, p, 0 end
  local wait = WINDOW
  if c >= limit and c > 0 then
    wait = (WINDOW - into) + WINDOW * (1 - limit / c)
  elseif p > 0 then
    wait = WINDOW * (1 - (limit - c) / p) - into
  end
  return used, c, p, math.max(1, math.ceil(wait))
end

-- rpm: exact (a log of admission times) up to RPM_EXACT_MAX, where one request more or less matters and
-- the log is small; smoothed above it, so a key allowed 100,000 requests a minute does not keep 100,000
-- entries in Redis.
local RPM_EXACT_MAX = 1000
local RPM_FIELDS = {'rb', 'rc', 'rp'}
local rpm_remaining, rpm_reset = '', ''
local rc, rp = 0, 0
if rpm and rpm <= RPM_EXACT_MAX then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - WINDOW)
  local n = redis.call('ZCARD', KEYS[4])
  local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  local reset = WINDOW
  if oldest[2] then reset = math.max(1, tonumber(oldest[2]) + WINDOW - now) end
  if n >= rpm then return {'rpm', tostring(reset)} end
  rpm_remaining = tostring(rpm - n - 1)
  rpm_reset = tostring(reset)
elseif rpm then
  local used, wait
  used, rc, rp, wait = smoothed(RPM_FIELDS, rpm)
  if wait > 0 then return {'rpm', tostring(wait)} end
  rpm_remaining = tostring(math.max(0, math.floor(rpm - used - 1)))
  rpm_reset = tostring(WINDOW - into)
end

local tpm_remaining, tpm_reset = '', ''
local c, p = 0, 0
if tpm then
  local used, wait
  used, c, p, wait = smoothed({'b', 'c', 'p'}, tpm)
  if wait > 0 then return {'tpm', tostring(wait)} end
  tpm_remaining = tostring(math.max(0, math.floor(tpm - used - tokens)))
  tpm_reset = tostring(WINDOW - into)
end

-- Admitted: record the reservation and count the request.
redis.call('ZADD', KEYS[2], now + reservation_ttl, id)
redis.call('HSET', KEYS[3], id, tostring(cost) .. ' ' .. tostring(tokens) .. ' ' .. tostring(bucket))
if cost ~= 0 then redis.call('HINCRBYFLOAT', KEYS[3], '_total', cost) end
redis.call('PEXPIRE', KEYS[2], reservation_ttl + WINDOW)
redis.call('PEXPIRE', KEYS[3], reservation_ttl + WINDOW)
if rpm and rpm <= RPM_EXACT_MAX then
  redis.call('ZADD', KEYS[4], now + hold, id)
  -- Never shorten: an entry dated ahead (a prefetched admission) must outlive later ones' minute.
  if redis.call('PTTL', KEYS[4]) < WINDOW + hold then redis.call('PEXPIRE', KEYS[4], WINDOW + hold) end
elseif rpm then
  redis.call('HSET', KEYS[5], 'rb', bucket, 'rc', rc + 1, 'rp', rp)
end
if tpm then
  redis.call('HSET', KEYS[5], 'b', bucket, 'c', c + tokens, 'p', p)
end
if tpm or (rpm and rpm > RPM_EXACT_MAX) then redis.call('PEXPIRE', KEYS[5], 2 * WINDOW) end
if spend then redis.call('PEXPIRE', KEYS[1], ledger_ttl) end
local budget_left = ''
if max_budget then budget_left = tostring(max_budget - spend - reserved - cost) end
return {'ok', gen, spend and tostring(spend) or '', rpm_remaining, rpm_reset, tpm_remaining, tpm_reset, tostring(bucket), budget_left, parallel_left}
