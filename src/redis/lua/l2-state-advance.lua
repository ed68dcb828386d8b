--[[
  l2-state-advance: moves the L2 state cursor, if nobody moved it since it was read.

  KEYS[1]  the L2 state hash (RedisKeys.l2State)
  ARGV[1]  the run_id of the server the caller checked (l2-state-read's first value)
  ARGV[2]  the state's run_id as the caller read it ("" when absent)
  ARGV[3]  the state's through as the caller read it ("" when absent)
  ARGV[4]  the new through: the caller wrote the tombstones of every event after ARGV[3] up to this id

  Returns  1 moved; 0 the state changed since it was read (another replica moved it: read again);
           -1 this is not the server the caller checked (Redis restarted or failed over: check again).
]]
local info = redis.call('INFO', 'server')
if string.match(info, 'run_id:(%w+)') ~= ARGV[1] then
  return -1
end
local state = redis.call('HMGET', KEYS[1], 'run_id', 'through')
if (state[1] or '') ~= ARGV[2] or (state[2] or '') ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], 'run_id', ARGV[1], 'through', ARGV[4])
return 1
