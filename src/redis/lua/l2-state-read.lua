--[[
  l2-state-read: what the L2 state cursor says, and which Redis server says it.

  KEYS[1]  the L2 state hash (RedisKeys.l2State): run_id = the server the cursor was last verified on,
           through = every event id up to this one has its tombstones in this Redis
  Returns  { current server run_id, state run_id or false, through or false }

  The cursor lives in the same Redis as the tombstones it vouches for: a snapshot restore, an AOF replay or
  a failover to a lagging replica rewinds both together, and the server's run_id changes (docs/coherence.md #9).
]]
local info = redis.call('INFO', 'server')
local run_id = string.match(info, 'run_id:(%w+)')
local state = redis.call('HMGET', KEYS[1], 'run_id', 'through')
return { run_id, state[1], state[2] }
