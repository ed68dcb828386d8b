-- Claims this round of background health checks for one replica (proxy/health-prober.ts): rounds are numbered by
-- Redis's clock, so every replica agrees which round it is, and the first replica to ask for a round gets it; the
-- others are told no. One round per interval for the whole cluster, whoever runs it, whichever replicas come and go.
-- KEYS[1]: prefix of the round keys. ARGV[1]: interval ms, ARGV[2]: the asking replica's id.
-- Returns the round number claimed, or 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local round = math.floor(now / interval)
if redis.call('SET', KEYS[1] .. round, ARGV[2], 'NX', 'PX', interval * 2) then return round end
return 0
