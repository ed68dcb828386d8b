-- Merges one replica's latest latencies into the cluster's per-deployment average, and returns the whole of it
-- (proxy/deployment-load.ts, latency-based routing). An exponentially weighted average: every replica's
-- observations move it, the latest the most.
-- KEYS[1]: the latency HASH (deployment id -> ms). ARGV[1]: weight of a new observation (0..1], ARGV[2]: ttl ms,
-- then pairs: deployment id, mean latency (ms) this replica saw since its last call.
-- Returns the HASH as a flat list: id, ms, id, ms, ...
local alpha = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local seen = tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  local merged = seen
  if old then merged = old * (1 - alpha) + seen * alpha end
  redis.call('HSET', KEYS[1], ARGV[i], tostring(merged))
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return redis.call('HGETALL', KEYS[1])
