--[==[ RelayWarden: reading the sliding windows (window.lua).

scripts.py puts this between prelude.lua and check.lua / reserve.lua, so the
read-only lookup (`relaywarden status`) and admission count the same way. The
algorithm and its error bound are documented in check.lua.
  fields_of(key)                 the whole state hash as a table
  counter(h, unit, window, nsub) what was committed in the window (ring of buckets)
  unique(h, unit, window, k)     distinct members in the window (HyperLogLog union
                                 of the ring KEYS[k..k+2])
  ring_current(key, unit, window, k)  the ring's HyperLogLog for now
  distinct(zkey, window)         distinct members in the window, exactly (a unique
                                 limit's sorted set: member -> last time counted)
  unreserve(key, qkey, member, h)  take a removed reservation out of the sums
]==]

-- The whole hash in one call (it is small: nsub+1 fields per unit and window).
local function fields_of(key)
  local flat = redis.call("HGETALL", key)
  local h = {}
  for j = 1, #flat, 2 do
    h[flat[j]] = flat[j + 1]
  end
  return h
end

local function counter(h, unit, window, nsub)
  local g = window / nsub
  local i = math.floor(now / g)
  local prefix = unit .. fmt(window) .. ":"
  local total = 0
  for s = 0, nsub do
    local v = h[prefix .. s]
    if v then
      local b, n = string.match(v, "^(%-?%d+):(%d+)$")
      b = tonumber(b)
      if b and b >= i - nsub and b <= i then
        total = total + tonumber(n)
      end
    end
  end
  return total
end

-- Unique counts without a limit (burst detection): per (unit, window) a ring of
-- 3 HyperLogLogs, KEYS[k], KEYS[k+1], KEYS[k+2] (declared by the caller: fixed
-- names, the same hash tag as the state hash). Half-window bucket b lives in
-- slot b mod 3; the state hash's field "U<unit><window>:<slot>" says which
-- bucket a slot holds now.
local function ring_field(unit, window, slot)
  return "U" .. unit .. fmt(window) .. ":" .. string.format("%d", slot)
end

local function unique(h, unit, window, k)
  local g = window / 2
  local i = math.floor(now / g)
  local keys = {}
  for slot = 0, 2 do
    local b = tonumber(h[ring_field(unit, window, slot)] or "")
    -- Only the buckets of the window that exist: PFCOUNT of one key uses its
    -- cached count, of several it merges registers (much slower).
    if b and b >= i - 2 and b <= i and redis.call("EXISTS", KEYS[k + slot]) == 1 then
      keys[#keys + 1] = KEYS[k + slot]
    end
  end
  if #keys == 0 then
    return 0
  end
  return redis.call("PFCOUNT", unpack(keys))
end

-- The ring's HyperLogLog for the bucket of `now`, emptied first if it still holds
-- an older bucket (commit.lua adds to it).
local function ring_current(key, unit, window, k)
  local i = math.floor(now / (window / 2))
  local slot = i % 3
  local field = ring_field(unit, window, slot)
  if tonumber(redis.call("HGET", key, field) or "") ~= i then
    redis.call("DEL", KEYS[k + slot])
    redis.call("HSET", key, field, string.format("%d", i))
  end
  return KEYS[k + slot]
end

-- A unique limit's members are a sorted set scored by the last time each was
-- counted: those of the last `window` are exactly the distinct ones in it.
local function distinct(zkey, window)
  return redis.call("ZCOUNT", zkey, fmt(now - window), "+inf")
end


-- Reservations (reserve.lua): sums of the live ones per unit, in the state hash.
local UNITS = {"m", "r", "b", "R", "D"}
local SUMS = {"qm", "qr", "qb", "qR", "qD"}

-- `member` ("<id> m r b R D") has just been removed from `qkey`: subtract its
-- amounts from the sums (and from the table `h` if given, the caller's copy).
-- No reservation left: the sums go (they must be 0; this also heals any drift).
local function unreserve(key, qkey, member, h)
  local n = 0
  for word in string.gmatch(member, "%S+") do
    if n > 0 and SUMS[n] then
      local amount = tonumber(word) or 0
      if amount > 0 then
        local left = redis.call("HINCRBY", key, SUMS[n], -amount)
        if h then
          h[SUMS[n]] = tostring(left)
        end
      end
    end
    n = n + 1
  end
  if redis.call("ZCARD", qkey) == 0 then
    redis.call("HDEL", key, unpack(SUMS))
    if h then
      for _, name in ipairs(SUMS) do
        h[name] = nil
      end
    end
  end
end
