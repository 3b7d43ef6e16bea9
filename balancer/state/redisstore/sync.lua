-- One balancer's heartbeat, atomically: publish its counts, read the other
-- live balancers', divide each backend's slots among them by demand, and
-- return this balancer's grants. See redis.go for why it is shaped so.
--
-- KEYS[1] balancers zset (id -> expiry ms), KEYS[2] this balancer's hash,
-- KEYS[3] last-seen hash, KEYS[4] generation (unix ms this state began).
-- ARGV: id, ttl ms, queued, balancer-key prefix, weight, epoch ms, n, hold
--       (1: grant exactly the floors), sync interval ms, arrivals/s, served/s,
--       mean service ms (the balancer's flow, for the scaler), then n times
--       (backend id, local in-flight, floor, limit, last-seen ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl, queued, prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local myweight, epochms, n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local hold = ARGV[8] == '1'
local interval = tonumber(ARGV[9])
local arrivals, served, service = ARGV[10], ARGV[11], ARGV[12]
-- The generation names this copy of the state. A balancer that sees it
-- change knows Redis lost the grants it and the others may still be using,
-- and holds its grants for a TTL so the others can report first.
local born = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
if born == 0 then
  redis.call('SET', KEYS[4], now)
  born = now
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, me)

local ids, loc, flo, lim = {}, {}, {}, {}
local mine = queued
for i = 1, n do
  local b = 12 + (i - 1) * 5
  ids[i] = ARGV[b + 1]
  loc[i] = tonumber(ARGV[b + 2])
  flo[i] = tonumber(ARGV[b + 3])
  lim[i] = tonumber(ARGV[b + 4])
  local seen = tonumber(ARGV[b + 5])
  mine = mine + loc[i]
  if seen > 0 then
    local cur = tonumber(redis.call('HGET', KEYS[3], ids[i]) or '0')
    if seen > cur then redis.call('HSET', KEYS[3], ids[i], seen) end
  end
end

if myweight > 0 then mine = myweight end

-- Live balancers in id order (every caller divides the same way), each
-- weighted by its demand (in flight everywhere + queued, or the smoothed
-- weight it reported) plus one, so an idle balancer still holds a few slots
-- and serves its first request at once.
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live)
local order, weight, total = {}, {}, 0
local granted, remote = {}, {}
for i = 1, n do granted[i] = 0; remote[i] = 0 end
for _, b in ipairs(live) do
  local w = nil
  if b == me then
    w = mine + 1
  else
    local h = redis.call('HGETALL', prefix .. b)
    if #h > 0 then
      local f = {}
      w = 1
      for j = 1, #h, 2 do
        local v = tonumber(h[j + 1])
        f[h[j]] = v
        if h[j] == 'q' or string.sub(h[j], 1, 2) == 'i:' then w = w + v end
      end
      if f['w'] and f['w'] > 0 then w = f['w'] + 1 end
      for i = 1, n do
        remote[i] = remote[i] + (f['i:' .. ids[i]] or 0)
        granted[i] = granted[i] + (f['g:' .. ids[i]] or 0)
      end
    end
  end
  if w then
    order[#order + 1] = b
    weight[b] = w
    total = total + w
  end
end

-- Fair targets by systematic sampling. All slots are laid out in layers
-- across the backends (id order): slot 1 of every backend, then slot 2, ...
-- so each balancer's slots spread over the backends. Balancer j owns the
-- slots whose position + u falls in its stretch [lo, hi) of the line, where
-- the stretches are proportional to the weights and u in [0, 1) moves with
-- the epoch (golden-ratio steps). So every balancer gets floor or ceil of its
-- share, on average exactly its share: one entitled to 0.15 slot holds one in
-- about 15% of epochs instead of never, and no balancer with demand starves.
-- Between epochs a stretch boundary moves by less than one slot.
local idx = {}
for i = 1, n do idx[i] = i end
table.sort(idx, function(a, b) return ids[a] < ids[b] end)
local target = {}
for i = 1, n do target[i] = 0 end
local before, rank = 0, 0
for _, b in ipairs(order) do
  if b == me then break end
  before = before + weight[b]
  rank = rank + 1
end
local total_slots = 0
for i = 1, n do total_slots = total_slots + math.max(lim[i], 0) end
local ep = math.floor(now / epochms)
local u = (ep * 0.6180339887498949) % 1
-- The stretches always fall in the same place of the line (in balancer id
-- order), so without more a small balancer's slots would always sit on the
-- same few backends: the last ones of a layer. Those backends would then be
-- used less whenever it is idle. Every 4 epochs the backends' order within
-- the layers rotates by one, so each balancer's slots visit every backend.
local rot = math.floor(ep / 4)
-- my slot positions p (0-based) satisfy lo <= p + u < hi
local lo = total_slots * before / total
local hi = total_slots * (before + weight[me]) / total
local first, last = math.ceil(lo - u), math.ceil(hi - u) - 1
-- Walk the layers in blocks of equal membership (layers l0..l1-1 hold the
-- backends whose limit exceeds l1-1), counting my positions in each.
local limits = {}
for i = 1, n do if lim[i] > 0 then limits[#limits + 1] = lim[i] end end
table.sort(limits)
local pos, layer = 0, 0
for _, l1 in ipairs(limits) do
  if l1 > layer then
    local members = {}
    for _, i in ipairs(idx) do if lim[i] >= l1 then members[#members + 1] = i end end
    local c = #members
    local size = (l1 - layer) * c
    local a, z = math.max(first, pos), math.min(last, pos + size - 1)
    if a <= z then
      local len, off = z - a + 1, (a - pos) % c
      local full, rest = math.floor(len / c), len % c
      for m = 1, c do
        local k = members[((m - 1 + rot) % c) + 1]
        target[k] = target[k] + full
        if (m - 1 - off) % c < rest then target[k] = target[k] + 1 end
      end
    end
    pos, layer = pos + size, l1
  end
end

-- Grants: the target, but never more than the others leave free (so grants
-- never sum past the limit) and never less than the floor (what this
-- balancer may already have in flight).
local grants, seen = {}, {}
local fields = {'q', queued, 'w', myweight, 's', interval, 'a', arrivals, 'd', served, 't', service}
for i = 1, n do
  local g = math.min(lim[i] - granted[i], target[i])
  if g < flo[i] or hold then g = flo[i] end
  if g < 0 then g = 0 end
  grants[i] = g
  fields[#fields + 1] = 'i:' .. ids[i]
  fields[#fields + 1] = loc[i]
  fields[#fields + 1] = 'g:' .. ids[i]
  fields[#fields + 1] = g
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[2], ttl)
if n > 0 then seen = redis.call('HMGET', KEYS[3], unpack(ids)) end
for i = 1, n do seen[i] = tonumber(seen[i] or '0') or 0 end
return {grants, target, remote, seen, #order, rank, born}
