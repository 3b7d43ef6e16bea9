-- The cluster picture for the scaler: every live balancer's hash and the
-- last-seen hash. KEYS[1] balancers zset, KEYS[2] last-seen hash;
-- ARGV[1] balancer-key prefix.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, b in ipairs(live) do out[#out + 1] = redis.call('HGETALL', ARGV[1] .. b) end
return {out, redis.call('HGETALL', KEYS[2])}
