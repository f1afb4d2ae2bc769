--[==[ RelayWarden: count what a decided message used (commit.lua).

Queued by the end-of-message hook on the same pipeline as the decision event,
so a message costs one round trip at MAIL FROM (check.lua) and one here. The
sliding-window layout, its error bound and the key layout are documented in
check.lua; this script writes what that one reads.

KEYS[2i-1]  the state hash of scope i;
KEYS[2i]    its reservations (sorted set, see reserve.lua), same hash tag.
ARGV[1]  "" for Redis TIME, else seconds since the epoch (an injected test clock).
ARGV[2]  JSON: {"s": [scope, ...]} in KEYS order (pairs), each scope
           {"c":   [[unit, window, nsub, amount, once], ...],  counters to add to
                   (once = 1: at most `amount` per sub-bucket, for hits)
            "u":   [[unit, window, [member, ...], k, r], ...], members to add (hashed
                   by the caller): k = 0, to the HyperLogLog ring KEYS[r..r+2]
                   (window.lua); else to KEYS[k], a
                   unique limit's sorted set (member -> now; those older than the
                   window go), declared after the pairs, same hash tag
            "ttl": seconds,     the hash's expiry, refreshed on every commit
            "fs":  1,           record the first-seen time if there is none
            "p":   [add, half_life],   decay the penalty, then add to it
            "bl":  [tau, messages, r, d],  update the baselines (moving averages
                   of the rate, time constant tau): messages, and the members
                   new to unique entry r and d (1-based into "u"; 0: none)
            "q":   member}      settle this reservation (reserve.lua's member): what
                                was used is counted above, the rest is given back
Returns  {new members per "u" entry} (how many PFADDs changed their HyperLogLog;
         for a sorted set, how many were not counted in the window).

Baseline: an exponentially weighted rate, rate' = rate * exp(-dt/tau) + n/tau,
in events per second; over a window of length w a VPS is expected to send
about rate * w.
Penalty: p' = p * 0.5^(dt/half_life) + add, so clean (or no) mail lets it decay.
]==]

-- now, spec, fmt (prelude.lua); unreserve, SUMS, ring_current (window.lua).

-- Stored numbers kept short (memory per VPS): times to the second, rates and
-- penalties to 6 significant digits.
local function short(x)
  return string.format("%.6g", x)
end

local function second(x)
  return string.format("%d", x)
end

-- once = 1: the bucket holds at most `amount` (a hit counts once per sub-window).
local function add(key, unit, window, nsub, amount, once)
  local g = window / nsub
  local i = math.floor(now / g)
  local field = unit .. fmt(window) .. ":" .. (i % (nsub + 1))
  local v = redis.call("HGET", key, field)
  local total = amount
  if v then
    local b, n = string.match(v, "^(%-?%d+):(%d+)$")
    if tonumber(b) == i then
      total = (once == 1) and math.max(amount, tonumber(n)) or total + tonumber(n)
    end
  end
  redis.call("HSET", key, field, string.format("%d:%d", i, total))
end

local function add_members(key, unit, window, members, k)
  if #members == 0 then
    return 0
  end
  local g = window / 2
  local hll = ring_current(key, unit, window, k)
  local new = 0
  for _, m in ipairs(members) do
    new = new + redis.call("PFADD", hll, m)
  end
  redis.call("EXPIRE", hll, math.ceil(window + g) + 1)
  return new
end

-- A unique limit: exact, sliding. Each member scored by when it was last counted.
local function add_distinct(zkey, window, members)
  redis.call("ZREMRANGEBYSCORE", zkey, "-inf", "(" .. fmt(now - window))
  local new = 0
  for _, m in ipairs(members) do
    new = new + redis.call("ZADD", zkey, now, m)
  end
  if #members > 0 then
    redis.call("EXPIRE", zkey, math.ceil(window) + 60)
  end
  return new
end

local function decayed(value, since, scale, halving)
  local v = tonumber(value) or 0
  local t = tonumber(since) or now
  local dt = math.max(0, now - t)
  if halving then
    return v * math.pow(0.5, dt / scale)
  end
  return v * math.exp(-dt / scale)
end

local out = {}
for n, scope in ipairs(spec["s"]) do
  local key, qkey = KEYS[2 * n - 1], KEYS[2 * n]
  for _, c in ipairs(scope["c"] or {}) do
    add(key, c[1], c[2], c[3], c[4], c[5])
  end
  local new = {}
  for _, u in ipairs(scope["u"] or {}) do
    local k = u[4] or 0
    if k > 0 then
      new[#new + 1] = add_distinct(KEYS[k], u[2], u[3])
    else
      new[#new + 1] = add_members(key, u[1], u[2], u[3], u[5])
    end
  end
  if scope["fs"] == 1 then
    redis.call("HSETNX", key, "fs", second(now))
  end
  local p = scope["p"]
  if p then
    local cur = redis.call("HMGET", key, "p", "pt")
    redis.call("HSET", key, "p", short(decayed(cur[1], cur[2], p[2], true) + p[1]), "pt", second(now))
  end
  local bl = scope["bl"]
  if bl then
    local tau = bl[1]
    local cur = redis.call("HMGET", key, "bm", "br", "bd", "bt")
    local nr = (bl[3] > 0) and new[bl[3]] or 0
    local nd = (bl[4] > 0) and new[bl[4]] or 0
    redis.call("HSET", key,
      "bm", short(decayed(cur[1], cur[4], tau, false) + bl[2] / tau),
      "br", short(decayed(cur[2], cur[4], tau, false) + nr / tau),
      "bd", short(decayed(cur[3], cur[4], tau, false) + nd / tau),
      "bt", second(now))
  end
  if scope["q"] and redis.call("ZREM", qkey, scope["q"]) == 1 then
    unreserve(key, qkey, scope["q"], nil)
  end
  -- Never shorten the life of a hash that still holds others' live reservations.
  if redis.call("TTL", key) < scope["ttl"] then
    redis.call("EXPIRE", key, scope["ttl"])
  end
  out[#out + 1] = new
end
return out
