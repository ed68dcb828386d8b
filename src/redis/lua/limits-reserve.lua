-- Admits one request against the limits of every level it belongs to (key, team member, user, team), for
-- every replica at once. All levels are checked first and reserved only if every one has room, in one
-- atomic step: concurrent requests cannot all pass the check before any of them is counted (LiteLLM
-- #34732), and a request refused by its team holds nothing on its key. Time is Redis's clock.
--
-- KEYS, five per level, in the order of the levels:
--   ledger    HASH  spend (current budget period), gen (spend generation, see sql/0004), run (the run_id of the
--                   server it was seeded on: a ledger replicated from another server before a failover, or
--                   restored from a snapshot, is of another history and is re-seeded before it admits)
--   inflight  ZSET  request id -> expiry (ms); a dead replica's reservations expire
--   reserved  HASH  request id -> "cost tokens bucket"; field _total = sum of reserved cost
--   requests  ZSET  request id -> admission time (ms): the exact sliding minute for rpm ≤ 1000
--   windows   HASH  b, c, p: current minute, its tokens, the previous minute's tokens (tpm);
--                   rb, rc, rp: the same in requests, for rpm > 1000
-- ARGV[1..7]: request id, worst-case cost, worst-case tokens, reservation ttl ms, ledger ttl ms, hold ms
--   (hold: for an admission prefetched ahead of its request (src/limits/admission-prefetcher.ts), how long it
--   may wait for one; its rpm log entry is dated that much later, so the request it admits is counted for a
--   whole minute from whenever it is used; 0 for a request at hand), the run_id of this server as the caller
--   read it on this connection (redis/server-identity.ts)
-- then six per level: max_budget, rpm, tpm, max_parallel, seed spend, seed generation ("" = none).
-- A seed is durable spend plus what the seeding replica charged and has not flushed; it never lowers a ledger
-- of the same generation (another replica may have charged it since), it replaces one of another generation.
--
-- Returns {"ok", then per level: gen, spend, rpm remaining, rpm reset ms, tpm remaining, tpm reset ms,
-- bucket, budget left, parallel slots left} (what is left after this admission; "" for a limit the level
-- does not have), or {"seed", level numbers (1-based) whose ledger must be seeded from Postgres first},
-- or {refusal, detail, level number}: the first level, in order, that had no room.

local WINDOW = 60000
local RPM_EXACT_MAX = 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local id = ARGV[1]
local cost = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local reservation_ttl = tonumber(ARGV[4])
local ledger_ttl = tonumber(ARGV[5])
local hold = tonumber(ARGV[6]) or 0
local run_id = ARGV[7]
local levels = #KEYS / 5

local bucket = math.floor(now / WINDOW)
local into = now % WINDOW

-- A sliding minute approximated from two fixed minutes (the previous one weighted by how much of it still
-- overlaps the window), so there is no 2x burst at a minute boundary. `fields` name the current minute, its
-- count and the previous minute's count in `windows`. Returns count so far, current, previous, and the wait
-- (ms) until `limit` admits again (0 when it admits now).
local function smoothed(windows, fields, limit)
  local v = redis.call('HMGET', windows, fields[1], fields[2], fields[3])
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

-- Checks one level; returns its state for the reservation, or nil, refusal, detail.
local function check(n)
  local k = (n - 1) * 5
  local ledger, inflight, reserved_hash, requests, windows = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local a = 7 + (n - 1) * 6
  local max_budget = tonumber(ARGV[a + 1])
  local rpm = tonumber(ARGV[a + 2])
  local tpm = tonumber(ARGV[a + 3])
  local max_parallel = tonumber(ARGV[a + 4])
  local seed_spend = tonumber(ARGV[a + 5])
  local s = { rpm = rpm, tpm = tpm, max_budget = max_budget, rpm_remaining = '', rpm_reset = '', tpm_remaining = '', tpm_reset = '',
              parallel_left = '', rc = 0, rp = 0, c = 0, p = 0, gen = '' }

  -- Release reservations whose replica never settled them (bounded work per call).
  local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 500)
  if #expired > 0 then
    local amounts = redis.call('HMGET', reserved_hash, unpack(expired))
    local freed = 0
    for i = 1, #amounts do
      if amounts[i] then freed = freed + tonumber(string.match(amounts[i], '^(%S+)')) end
    end
    redis.call('ZREM', inflight, unpack(expired))
    redis.call('HDEL', reserved_hash, unpack(expired))
    if freed ~= 0 then redis.call('HINCRBYFLOAT', reserved_hash, '_total', -freed) end
  end

  local reserved = tonumber(redis.call('HGET', reserved_hash, '_total') or '0')
  if reserved < 1e-12 then reserved = 0 end
  s.reserved = reserved

  local ledger_now = redis.call('HMGET', ledger, 'spend', 'gen', 'run')
  if ledger_now[1] and ledger_now[3] == run_id then
    s.spend = tonumber(ledger_now[1])
    s.gen = ledger_now[2] or ''
  elseif seed_spend then
    local spend = seed_spend
    if ledger_now[1] and ledger_now[2] == ARGV[a + 6] then spend = math.max(spend, tonumber(ledger_now[1])) end
    redis.call('HSET', ledger, 'spend', tostring(spend), 'gen', ARGV[a + 6], 'run', run_id)
    s.spend = spend
    s.gen = ARGV[a + 6]
  elseif ledger_now[1] and not max_budget then
    -- No budget on this level: its spend is only reported, and settles keep adding to its generation.
    s.spend = tonumber(ledger_now[1])
    s.gen = ledger_now[2] or ''
  end

  if max_budget then
    if not s.spend then return s, 'seed' end
    if s.spend >= max_budget then return nil, 'budget', tostring(s.spend) end
    -- Budget is left, but requests in flight have reserved it all: come back when one settles.
    if s.spend + reserved >= max_budget then return nil, 'budget_reserved', tostring(s.spend) end
  end

  if max_parallel then
    local inflight_now = redis.call('ZCARD', inflight)
    if inflight_now >= max_parallel then return nil, 'parallel', tostring(inflight_now) end
    s.parallel_left = tostring(max_parallel - inflight_now - 1)
  end

  -- rpm: exact (a log of admission times) up to RPM_EXACT_MAX, where one request more or less matters and
  -- the log is small; smoothed above it, so a level allowed 100,000 requests a minute does not keep
  -- 100,000 entries in Redis.
  if rpm and rpm <= RPM_EXACT_MAX then
    redis.call('ZREMRANGEBYSCORE', requests, '-inf', now - WINDOW)
    local count = redis.call('ZCARD', requests)
    local oldest = redis.call('ZRANGE', requests, 0, 0, 'WITHSCORES')
    local reset = WINDOW
    if oldest[2] then reset = math.max(1, tonumber(oldest[2]) + WINDOW - now) end
    if count >= rpm then return nil, 'rpm', tostring(reset) end
    s.rpm_remaining = tostring(rpm - count - 1)
    s.rpm_reset = tostring(reset)
  elseif rpm then
    local used, wait
    used, s.rc, s.rp, wait = smoothed(windows, {'rb', 'rc', 'rp'}, rpm)
    if wait > 0 then return nil, 'rpm', tostring(wait) end
    s.rpm_remaining = tostring(math.max(0, math.floor(rpm - used - 1)))
    s.rpm_reset = tostring(WINDOW - into)
  end

  if tpm then
    local used, wait
    used, s.c, s.p, wait = smoothed(windows, {'b', 'c', 'p'}, tpm)
    if wait > 0 then return nil, 'tpm', tostring(wait) end
    s.tpm_remaining = tostring(math.max(0, math.floor(tpm - used - tokens)))
    s.tpm_reset = tostring(WINDOW - into)
  end
  return s
end

-- Every level is checked before any is reserved.
local states = {}
local unseeded = {}
for n = 1, levels do
  local s, refusal, detail = check(n)
  if refusal == 'seed' then
    unseeded[#unseeded + 1] = n
  elseif refusal then
    return {refusal, detail, n}
  end
  states[n] = s
end
if #unseeded > 0 then
  local reply = {'seed'}
  for i = 1, #unseeded do reply[#reply + 1] = unseeded[i] end
  return reply
end

-- Admitted on every level: record the reservation and count the request on each.
local reply = {'ok'}
for n = 1, levels do
  local s = states[n]
  local k = (n - 1) * 5
  local ledger, inflight, reserved_hash, requests, windows = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  redis.call('ZADD', inflight, now + reservation_ttl, id)
  redis.call('HSET', reserved_hash, id, tostring(cost) .. ' ' .. tostring(tokens) .. ' ' .. tostring(bucket))
  if cost ~= 0 then redis.call('HINCRBYFLOAT', reserved_hash, '_total', cost) end
  redis.call('PEXPIRE', inflight, reservation_ttl + WINDOW)
  redis.call('PEXPIRE', reserved_hash, reservation_ttl + WINDOW)
  if s.rpm and s.rpm <= RPM_EXACT_MAX then
    redis.call('ZADD', requests, now + hold, id)
    -- Never shorten: an entry dated ahead (a prefetched admission) must outlive later ones' minute.
    if redis.call('PTTL', requests) < WINDOW + hold then redis.call('PEXPIRE', requests, WINDOW + hold) end
  elseif s.rpm then
    redis.call('HSET', windows, 'rb', bucket, 'rc', s.rc + 1, 'rp', s.rp)
  end
  if s.tpm then
    redis.call('HSET', windows, 'b', bucket, 'c', s.c + tokens, 'p', s.p)
  end
  if s.tpm or (s.rpm and s.rpm > RPM_EXACT_MAX) then redis.call('PEXPIRE', windows, 2 * WINDOW) end
  if s.spend then redis.call('PEXPIRE', ledger, ledger_ttl) end
  local budget_left = ''
  if s.max_budget then budget_left = tostring(s.max_budget - s.spend - s.reserved - cost) end
  reply[#reply + 1] = s.gen
  reply[#reply + 1] = s.spend and tostring(s.spend) or ''
  reply[#reply + 1] = s.rpm_remaining
  reply[#reply + 1] = s.rpm_reset
  reply[#reply + 1] = s.tpm_remaining
  reply[#reply + 1] = s.tpm_reset
  reply[#reply + 1] = tostring(bucket)
  reply[#reply + 1] = budget_left
  reply[#reply + 1] = s.parallel_left
end
return reply
