-- The pool's shared counts, kept so that Redis's work follows what changes
-- rather than the size of the cluster. See sync.go for the cost model.
--
-- Keys: KEYS[1] balancers zset (id -> expiry ms), KEYS[2] granted hash
-- (backend -> grants summed over the recorded balancers), KEYS[3] in-flight
-- sums (a string of big-endian int32, one per backend index), KEYS[4] index
-- hash (backend -> its index in KEYS[3]), KEYS[5] free indexes set,
-- KEYS[6] sequence counter (raised when a sum or a last-seen time moves),
-- KEYS[7] last-seen feed zset (backend -> sequence of its latest move),
-- KEYS[8] last-seen hash, KEYS[9] generation, KEYS[10] registry hash,
-- KEYS[11] registry version, KEYS[12] registry-owned flag, KEYS[13] index
-- version (raised when an index is given or taken back). Each balancer's
-- own hash is prefix .. id: F.queued, F.weight, F.interval, F.arrivals,
-- F.done, F.service (queued, demand weight, sync interval ms, arrivals/s,
-- served/s, mean service ms) and its non-zero F.inflight .. backend and
-- F.granted .. backend. F, SYNC_REPLY, LOAD_REPLY and reply() come from
-- wire.go, prepended: the names are defined there, once for Go and Lua.
--
-- ARGV[1] is the operation, ARGV[2] the balancer-key prefix.
--   sync:  ARGV[3] id, [4] ttl ms, [5] hold (1: grant exactly the floors),
--          [6] full (1: the items are every backend this balancer holds),
--          [7] generation, [8] sequence the caller has read up to (-1: read
--          nothing this time), [9] registry version the caller has (-1:
--          send it anyway), [10] index version the caller has (likewise),
--          [11] k scalars follow as name, value pairs (0: unchanged), then
--          m, then m items of 6: (backend, in flight, floor, want, limit,
--          last seen ms), then (backend, in flight) pairs to the end.
--   leave:  ARGV[3] balancer id.
--   remove: ARGV[3] backend id (the scaler's registry removal).
--   load:   nothing more.
local op, prefix = ARGV[1], ARGV[2]

-- split tells a balancer hash field of a backend apart: 'i' (in flight) or
-- 'g' (granted), and the backend; nil for a scalar.
local function split(k)
  if string.sub(k, 1, #F.inflight) == F.inflight then return 'i', string.sub(k, #F.inflight + 1) end
  if string.sub(k, 1, #F.granted) == F.granted then return 'g', string.sub(k, #F.granted + 1) end
  return nil
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Lua's unpack takes a few thousand values at most: long lists go to
-- Redis in parts (an even size, so that pairs stay whole).
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

local seq = nil
-- bump gives this call's sequence number, taking one only if something
-- moved, so that an idle cluster's counter stands still.
local function bump()
  if not seq then seq = redis.call('INCR', KEYS[6]) end
  return seq
end

-- apply adds deltas (backend -> {in flight, granted, last-seen moved}) to
-- the sums; gcur, when given, holds each backend's granted sum as it is
-- (otherwise it is read only where needed). In-flight sums live at fixed
-- offsets of one string, so one BITFIELD updates any number of them and a
-- reader fetches them all with one GET of 4 bytes a backend, instead of a
-- field per backend. A backend whose sums reach zero and that a
-- scaler-owned registry no longer lists gives its index back: the string
-- must not grow with every container ever started.
local function apply(deltas, order, gcur)
  if #order == 0 then return end
  local idx = hmget(KEYS[4], order)
  local ops, opat, given = {}, {}, false
  for j, b in ipairs(order) do
    local n = tonumber(idx[j])
    local d = deltas[b]
    if not n and d[1] ~= 0 then
      -- Freed indexes first; else the next fresh one, which is the number
      -- given so far while none is free.
      n = tonumber(redis.call('SPOP', KEYS[5]) or '') or redis.call('HLEN', KEYS[4])
      redis.call('HSET', KEYS[4], b, n)
      given = true
    end
    idx[j] = n or false
    if n and (d[1] ~= 0 or d[2] ~= 0) then
      ops[#ops + 1] = 'INCRBY'; ops[#ops + 1] = 'i32'; ops[#ops + 1] = '#' .. n; ops[#ops + 1] = d[1]
      opat[#opat + 1] = j
    end
  end
  local isum = {}
  local x = 0
  for s = 1, #ops, part do
    for _, v in ipairs(redis.call('BITFIELD', KEYS[3], unpack(ops, s, math.min(s + part - 1, #ops)))) do
      x = x + 1
      isum[opat[x]] = v
    end
  end
  local set, del, feed, gone = {}, {}, {}, {}
  local owned = nil
  for j, b in ipairs(order) do
    local d = deltas[b]
    local g = nil
    if d[2] ~= 0 then
      if gcur then g = tonumber(gcur[j]) or 0 else g = tonumber(redis.call('HGET', KEYS[2], b) or '0') or 0 end
      g = g + d[2]
      if g ~= 0 then set[#set + 1] = b; set[#set + 1] = g else del[#del + 1] = b end
    end
    if d[1] ~= 0 then bump() end
    if d[3] then feed[#feed + 1] = bump(); feed[#feed + 1] = b end
    if isum[j] == 0 then
      if owned == nil then owned = redis.call('EXISTS', KEYS[12]) == 1 end
      if owned and redis.call('HEXISTS', KEYS[10], b) == 0 then
        g = g or tonumber(redis.call('HGET', KEYS[2], b) or '0') or 0
        if g == 0 then
          gone[#gone + 1] = b
          redis.call('HDEL', KEYS[4], b)
          redis.call('SADD', KEYS[5], idx[j])
          given = true
        end
      end
    end
  end
  write('HSET', KEYS[2], set)
  write('HDEL', KEYS[2], del)
  write('ZADD', KEYS[7], feed)
  write('ZREM', KEYS[7], gone)
  if given then redis.call('INCR', KEYS[13]) end
end

-- drop takes balancer id's counts and grants out of the sums and forgets
-- it: a dead balancer (its expiry passed) or one that left.
local function drop(id)
  local h = redis.call('HGETALL', prefix .. id)
  local deltas, order = {}, {}
  for j = 1, #h, 2 do
    local v = tonumber(h[j + 1]) or 0
    local kind, b = split(h[j])
    if kind then
      local d = deltas[b]
      if not d then d = {0, 0}; deltas[b] = d; order[#order + 1] = b end
      if kind == 'i' then d[1] = d[1] - v else d[2] = d[2] - v end
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

if op == 'remove' then
  -- The scaler removes backend ARGV[3] from the registry. Its index goes
  -- back at once if nothing is in flight on it or granted; otherwise the
  -- balancers' last reports about it give it back (see apply).
  local b = ARGV[3]
  redis.call('HDEL', KEYS[10], b)
  redis.call('HDEL', KEYS[8], b)
  redis.call('ZREM', KEYS[7], b)
  redis.call('SET', KEYS[12], '1')
  redis.call('INCR', KEYS[11])
  local n = tonumber(redis.call('HGET', KEYS[4], b) or '')
  if n and tonumber(redis.call('HGET', KEYS[2], b) or '0') == 0
    and redis.call('BITFIELD', KEYS[3], 'GET', 'i32', '#' .. n)[1] == 0 then
    redis.call('HDEL', KEYS[4], b)
    redis.call('SADD', KEYS[5], n)
    redis.call('INCR', KEYS[13])
  end
  return 1
end

if op == 'load' then
  reap()
  local live = redis.call('ZRANGE', KEYS[1], 0, -1)
  local each = {}
  for j, id in ipairs(live) do
    each[j] = redis.call('HMGET', prefix .. id, F.queued, F.interval, F.arrivals, F.done, F.service)
  end
  return reply(LOAD_REPLY, {live = live, scalars = each, index = redis.call('HGETALL', KEYS[4]),
    counts = redis.call('GET', KEYS[3]) or '', lastseen = redis.call('HGETALL', KEYS[8])})
end

-- sync
local me, ttl, hold, full = ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6] == '1'
local cgen, cseq, creg, cix = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
-- The generation names this copy of the state. A balancer that sees it
-- change knows Redis lost the grants it and the others may still be using.
local gen = tonumber(redis.call('GET', KEYS[9]) or '0') or 0
if gen == 0 then
  redis.call('SET', KEYS[9], now)
  gen = now
end
reap()
-- A caller that sends only its changes must be the one Redis remembers:
-- same generation, not reaped meanwhile. Otherwise it sends everything.
if not full and (gen ~= cgen or not redis.call('ZSCORE', KEYS[1], me)) then
  return reply(SYNC_REPLY, {status = 'resync', gen = gen})
end
redis.call('ZADD', KEYS[1], now + ttl, me)
local mykey = prefix .. me
local k = tonumber(ARGV[11])
if k > 0 then
  local s = {}
  for j = 1, 2 * k do s[j] = ARGV[11 + j] end
  redis.call('HSET', mykey, unpack(s))
end

local base = 11 + 2 * k
local m = tonumber(ARGV[base + 1])
base = base + 1
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
-- Then backends whose in-flight count alone moved, as (backend, count):
-- the most common change under load, which needs no grant arithmetic.
local cbase = base + 6 * m
local cids, cloc = {}, {}
for o = cbase + 1, #ARGV, 2 do
  cids[#cids + 1] = ARGV[o]
  cloc[#cloc + 1] = tonumber(ARGV[o + 1])
end
if full then
  -- Whatever this balancer still holds and did not list is gone.
  local h = redis.call('HGETALL', mykey)
  for j = 1, #h, 2 do
    local kind, b = split(h[j])
    if kind and not at[b] then
      m = m + 1
      ids[m], loc[m], flo[m], want[m], lim[m], seen[m] = b, 0, 0, 0, 0, 0
      at[b] = m
    end
  end
end

local grants = {}
if m > 0 then
  local f = {}
  for j = 1, m do f[#f + 1] = F.inflight .. ids[j]; f[#f + 1] = F.granted .. ids[j] end
  local mine = hmget(mykey, f)
  local sums = hmget(KEYS[2], ids)
  local deltas, set, del = {}, {}, {}
  local seenids, seenat = {}, {}
  for j = 1, m do
    local b = ids[j]
    local oi, og = tonumber(mine[2 * j - 1]) or 0, tonumber(mine[2 * j]) or 0
    -- Never more than the others leave free (so grants never sum past the
    -- limit), never less than the floor (what may already be in flight).
    local g = math.min(want[j], lim[j] - ((tonumber(sums[j]) or 0) - og))
    if g < flo[j] or hold then g = flo[j] end
    if g < 0 then g = 0 end
    grants[j] = g
    if loc[j] ~= oi then
      if loc[j] ~= 0 then set[#set + 1] = f[2 * j - 1]; set[#set + 1] = loc[j] else del[#del + 1] = f[2 * j - 1] end
    end
    if g ~= og then
      if g ~= 0 then set[#set + 1] = f[2 * j]; set[#set + 1] = g else del[#del + 1] = f[2 * j] end
    end
    deltas[b] = {loc[j] - oi, g - og}
    if seen[j] > 0 then seenids[#seenids + 1] = b; seenat[#seenat + 1] = j end
  end
  if #seenids > 0 then
    local cur = hmget(KEYS[8], seenids)
    local newer = {}
    for x, b in ipairs(seenids) do
      local j = seenat[x]
      if seen[j] > (tonumber(cur[x]) or 0) then
        newer[#newer + 1] = b; newer[#newer + 1] = seen[j]
        deltas[b][3] = true
      end
    end
    write('HSET', KEYS[8], newer)
  end
  write('HSET', mykey, set)
  write('HDEL', mykey, del)
  apply(deltas, ids, sums)
end

if #cids > 0 then
  local f = {}
  for j, b in ipairs(cids) do f[j] = F.inflight .. b end
  local mine = hmget(mykey, f)
  local deltas, set, del, order = {}, {}, {}, {}
  for j, b in ipairs(cids) do
    local d = cloc[j] - (tonumber(mine[j]) or 0)
    if d ~= 0 then
      if cloc[j] ~= 0 then set[#set + 1] = f[j]; set[#set + 1] = cloc[j] else del[#del + 1] = f[j] end
      deltas[b] = {d, 0}
      order[#order + 1] = b
    end
  end
  write('HSET', mykey, set)
  write('HDEL', mykey, del)
  apply(deltas, order)
end

-- What moved since the caller's position: every in-flight sum (one
-- string) and the last-seen times that moved, with their values now.
local pos = tonumber(redis.call('GET', KEYS[6]) or '0') or 0
local counts, read, sids, svals = '', 0, {}, {}
if cseq >= 0 and pos > cseq then
  counts, read = redis.call('GET', KEYS[3]) or '', 1
  sids = redis.call('ZRANGEBYSCORE', KEYS[7], '(' .. cseq, '+inf')
  svals = hmget(KEYS[8], sids)
end

-- The live balancers and their demand weights, for the caller's division.
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local weights = {}
for j, id in ipairs(live) do weights[j] = redis.call('HGET', prefix .. id, F.weight) or '0' end

local reg = tonumber(redis.call('GET', KEYS[11]) or '0') or 0
local registry, regsent = {}, 0
if reg ~= creg then registry, regsent = redis.call('HGETALL', KEYS[10]), 1 end
local ix = tonumber(redis.call('GET', KEYS[13]) or '0') or 0
local index, ixsent = {}, 0
if ix ~= cix then index, ixsent = redis.call('HGETALL', KEYS[4]), 1 end
return reply(SYNC_REPLY, {status = 'ok', gen = gen, now = now, pos = pos, grants = grants,
  seen_ids = sids, seen_times = svals, live = live, weights = weights,
  registry_version = reg, registry_sent = regsent, registry = registry, owned = redis.call('EXISTS', KEYS[12]),
  index_version = ix, index_sent = ixsent, index = index, counts = counts, counts_read = read})
