-- The pool's shared counts, kept so that Redis's work follows what changes
-- rather than the size of the cluster. See redis.go (Store) for the model.
--
-- Keys: KEYS[1] balancers zset (id -> expiry ms), KEYS[2] aggregate hash
-- ("i:<backend>" in flight, "g:<backend>" granted, summed over the recorded
-- balancers), KEYS[3] change feed zset (backend -> sequence number of its
-- latest change), KEYS[4] sequence counter, KEYS[5] last-seen hash,
-- KEYS[6] generation, KEYS[7] registry hash, KEYS[8] registry version,
-- KEYS[9] registry-owned flag. Each balancer's own hash is prefix .. id:
-- "q", "w", "s", "a", "d", "t" (queued, demand weight, sync interval ms,
-- arrivals/s, served/s, mean service ms) and its non-zero "i:" and "g:".
--
-- ARGV[1] is the operation, ARGV[2] the balancer-key prefix.
--   sync:  ARGV[3] id, [4] ttl ms, [5] hold (1: grant exactly the floors),
--          [6] full (1: the items are every backend this balancer holds),
--          [7] generation, [8] feed position (-1: no feed this time),
--          [9] registry version the
--          caller has (-1: send it anyway), [10] k scalars follow as name,
--          value pairs (k = 0: unchanged), then m items of 6:
--          (backend, in flight, floor, want, limit, last seen ms).
--   leave: ARGV[3] id.
--   load:  nothing more.
local op, prefix = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local seq = nil
-- Lua's unpack takes a few thousand values at most: long lists go to
-- Redis in parts (an even size, so that field-value pairs stay whole).
local part = 4000
local function write(cmd, key, list)
  for s = 1, #list, part do redis.call(cmd, key, unpack(list, s, math.min(s + part - 1, #list))) end
end
local function hmget(key, list)
  local out = {}
  for s = 1, #list, part do
    for _, v in ipairs(redis.call('HMGET', key, unpack(list, s, math.min(s + part - 1, #list)))) do out[#out + 1] = v end
  end
  return out
end
-- bump gives this call's sequence number, taking one only if something
-- changed, so that an idle cluster's counter stands still.
local function bump()
  if not seq then seq = redis.call('INCR', KEYS[4]) end
  return seq
end

-- apply adds deltas (backend -> {di, dg}) to the aggregate hash and records
-- each backend whose sums moved in the change feed. A backend whose sums
-- reach zero and that a scaler-owned registry no longer lists leaves the
-- feed: no balancer routes to it, and the feed must not grow with every
-- container ever started.
local function apply(deltas, order)
  if #order == 0 then return end
  local f = {}
  for _, b in ipairs(order) do f[#f + 1] = 'i:' .. b; f[#f + 1] = 'g:' .. b end
  local cur = hmget(KEYS[2], f)
  local set, del, feed, gone = {}, {}, {}, {}
  local owned = nil
  for j, b in ipairs(order) do
    local d = deltas[b]
    local i = (tonumber(cur[2 * j - 1]) or 0) + d[1]
    local g = (tonumber(cur[2 * j]) or 0) + d[2]
    if i ~= 0 then set[#set + 1] = 'i:' .. b; set[#set + 1] = i else del[#del + 1] = 'i:' .. b end
    if g ~= 0 then set[#set + 1] = 'g:' .. b; set[#set + 1] = g else del[#del + 1] = 'g:' .. b end
    if d[1] ~= 0 or d[2] ~= 0 or d[3] then
      if i == 0 and g == 0 then
        if owned == nil then owned = redis.call('EXISTS', KEYS[9]) == 1 end
        if owned and redis.call('HEXISTS', KEYS[7], b) == 0 then gone[#gone + 1] = b
        else feed[#feed + 1] = bump(); feed[#feed + 1] = b end
      else
        feed[#feed + 1] = bump(); feed[#feed + 1] = b
      end
    end
  end
  write('HSET', KEYS[2], set)
  write('HDEL', KEYS[2], del)
  write('ZADD', KEYS[3], feed)
  write('ZREM', KEYS[3], gone)
end

-- drop takes balancer id's counts and grants out of the sums and forgets
-- it: a dead balancer (its expiry passed) or one that left.
local function drop(id)
  local h = redis.call('HGETALL', prefix .. id)
  local deltas, order = {}, {}
  for j = 1, #h, 2 do
    local k, v = h[j], tonumber(h[j + 1]) or 0
    local kind, b = string.sub(k, 1, 2), string.sub(k, 3)
    if kind == 'i:' or kind == 'g:' then
      local d = deltas[b]
      if not d then d = {0, 0}; deltas[b] = d; order[#order + 1] = b end
      if kind == 'i:' then d[1] = d[1] - v else d[2] = d[2] - v end
    end
  end
  apply(deltas, order)
  redis.call('DEL', prefix .. id)
  redis.call('ZREM', KEYS[1], id)
end

local function reap()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do drop(id) end
end

if op == 'leave' then
  drop(ARGV[3])
  return 1
end

if op == 'load' then
  reap()
  local live = redis.call('ZRANGE', KEYS[1], 0, -1)
  local each = {}
  for j, id in ipairs(live) do
    each[j] = redis.call('HMGET', prefix .. id, 'q', 's', 'a', 'd', 't')
  end
  return {live, each, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[5])}
end

-- sync
local me, ttl, hold, full = ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6] == '1'
local cgen, cseq, creg = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
-- The generation names this copy of the state. A balancer that sees it
-- change knows Redis lost the grants it and the others may still be using.
local gen = tonumber(redis.call('GET', KEYS[6]) or '0') or 0
if gen == 0 then
  redis.call('SET', KEYS[6], now)
  gen = now
end
reap()
-- A caller that sends only its changes must be the one Redis remembers:
-- same generation, not reaped meanwhile. Otherwise it sends everything.
if not full and (gen ~= cgen or not redis.call('ZSCORE', KEYS[1], me)) then
  return {'resync', gen}
end
redis.call('ZADD', KEYS[1], now + ttl, me)
local mykey = prefix .. me
local k = tonumber(ARGV[10])
if k > 0 then
  local s = {}
  for j = 1, 2 * k do s[j] = ARGV[10 + j] end
  redis.call('HSET', mykey, unpack(s))
end

local base = 10 + 2 * k
local m = (#ARGV - base) / 6
local ids, loc, flo, want, lim, seen, at = {}, {}, {}, {}, {}, {}, {}
for j = 1, m do
  local o = base + (j - 1) * 6
  ids[j] = ARGV[o + 1]
  loc[j] = tonumber(ARGV[o + 2])
  flo[j] = tonumber(ARGV[o + 3])
  want[j] = tonumber(ARGV[o + 4])
  lim[j] = tonumber(ARGV[o + 5])
  seen[j] = tonumber(ARGV[o + 6])
  at[ids[j]] = j
end
if full then
  -- Whatever this balancer still holds and did not list is gone.
  local h = redis.call('HGETALL', mykey)
  for j = 1, #h, 2 do
    local kind, b = string.sub(h[j], 1, 2), string.sub(h[j], 3)
    if (kind == 'i:' or kind == 'g:') and not at[b] then
      m = m + 1
      ids[m], loc[m], flo[m], want[m], lim[m], seen[m] = b, 0, 0, 0, 0, 0
      at[b] = m
    end
  end
end

local grants = {}
if m > 0 then
  local f = {}
  for j = 1, m do f[#f + 1] = 'i:' .. ids[j]; f[#f + 1] = 'g:' .. ids[j] end
  local mine = hmget(mykey, f)
  local sums = hmget(KEYS[2], f)
  local deltas, order, set, del = {}, {}, {}, {}
  local seenids, seenat = {}, {}
  for j = 1, m do
    local b = ids[j]
    local oi, og = tonumber(mine[2 * j - 1]) or 0, tonumber(mine[2 * j]) or 0
    -- Never more than the others leave free (so grants never sum past the
    -- limit), never less than the floor (what may already be in flight).
    local g = math.min(want[j], lim[j] - ((tonumber(sums[2 * j]) or 0) - og))
    if g < flo[j] or hold then g = flo[j] end
    if g < 0 then g = 0 end
    grants[j] = g
    if loc[j] ~= 0 then set[#set + 1] = 'i:' .. b; set[#set + 1] = loc[j] else del[#del + 1] = 'i:' .. b end
    if g ~= 0 then set[#set + 1] = 'g:' .. b; set[#set + 1] = g else del[#del + 1] = 'g:' .. b end
    deltas[b] = {loc[j] - oi, g - og}
    order[#order + 1] = b
    if seen[j] > 0 then seenids[#seenids + 1] = b; seenat[#seenat + 1] = j end
  end
  if #seenids > 0 then
    local cur = hmget(KEYS[5], seenids)
    local newer = {}
    for x, b in ipairs(seenids) do
      local j = seenat[x]
      if seen[j] > (tonumber(cur[x]) or 0) then
        newer[#newer + 1] = b; newer[#newer + 1] = seen[j]
        deltas[b][3] = true
      end
    end
    write('HSET', KEYS[5], newer)
  end
  write('HSET', mykey, set)
  write('HDEL', mykey, del)
  apply(deltas, order)
end

-- The feed: every backend whose sums or last-seen changed since the
-- caller's position, with their values now.
local pos = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
local fids, fin, fseen = {}, {}, {}
if cseq >= 0 and pos > cseq then
  fids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. cseq, '+inf')
  if #fids > 0 then
    local f = {}
    for j, b in ipairs(fids) do f[j] = 'i:' .. b end
    fin = hmget(KEYS[2], f)
    fseen = hmget(KEYS[5], fids)
  end
end

-- The live balancers and their demand weights, for the caller's division.
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local weights = {}
for j, id in ipairs(live) do weights[j] = redis.call('HGET', prefix .. id, 'w') or '0' end

local reg = tonumber(redis.call('GET', KEYS[8]) or '0') or 0
local registry, sent = {}, 0
if reg ~= creg then registry, sent = redis.call('HGETALL', KEYS[7]), 1 end
return {'ok', gen, now, pos, grants, fids, fin, fseen, live, weights, reg, sent, registry,
  redis.call('EXISTS', KEYS[9])}
