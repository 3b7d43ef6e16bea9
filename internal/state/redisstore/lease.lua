-- Take or renew the leader lease. KEYS[1] lease key; ARGV holder, ttl ms.
-- Returns {holder, ms left}: ARGV[1] and the ttl when taken or renewed,
-- else the current holder and what is left of its lease (a follower wakes
-- then to campaign).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {cur, tonumber(ARGV[2])}
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], tonumber(ARGV[2])}
end
return {cur, redis.call('PTTL', KEYS[1])}
