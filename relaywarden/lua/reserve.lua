--[==[ RelayWarden: admit a message and reserve what it may use (reserve.lua).

Called once at MAIL FROM for each group of scopes (the tagged scopes of a
sender, and separately the global ceiling), in the same pipeline as the block
lookups. Check and reserve happen in this one script, so no interleaving of
parallel sessions, milter processes or relays can admit more than a limit:
every admitted transaction holds a reservation that every later one counts.

A reservation is a member of a sorted set beside each scope's state hash,
    "<id> <m> <r> <b> <R> <D>" scored by its expiry
(what the transaction may use: messages, recipients, bytes, unique recipients,
unique domains), and the live reservations' sums are kept in the hash
(fields qm qr qb qR qD), so admission costs the same however many sessions
are open. The end of the message trues it up: commit.lua counts what was used
and removes the member (subtracting it from the sums); an aborted or refused
transaction removes it with nothing to count. A milter that dies leaves it
behind: at <expiry> (the lease) the next call that sees it subtracts and
removes it.

KEYS[2i-1]  the state hash of scope i (see check.lua for the key layout and the
            sliding window; the same window.lua functions read the counters);
KEYS[2i]    its reservations (sorted set), same hash tag.
ARGV[1]  "" to take the time from Redis TIME; else seconds since the epoch
         (an injected test clock).
ARGV[2]  JSON:
           {"id":    reservation id (the transaction's reference),
            "lease": seconds a reservation counts when nobody settles it,
            "need":  {unit: amount}, the least the transaction can use
                     (m: 1, r/R/D: 1, b: the declared SIZE or 1),
            "want":  {unit: amount}, the most it may reserve (one message, the
                     per-message recipient allowance, the declared SIZE or the
                     per-message byte allowance),
            "f":     {"wp", "ws", "wn", "ae", "ah", "as", "am"} warm-up period, start
                     fraction, new-after date (epoch, 0: none; a VPS first seen
                     before it does not warm up), adaptive on (0/1), half-life,
                     shrink, min factor;
                     applied to scopes with scaled = 1 (the VPS), read from the
                     meta fields of the first scope with "m" = 1,
            "kmax":  the most members of one unique limit's set to return,
            "kedge": n: a member counted within the window's last 1/n (about
                     to leave it) is not returned (it costs like a new one),
            "s":     [scope, ...] in KEYS order (pairs), each
                       {"c": [[unit, window, nsub, limit, scaled], ...],
                        "u": [[unit, window, limit, scaled, k, r], ...],
                        (limit -1: read only, e.g. the hits and burst counters;
                         k: 0 = the HyperLogLog ring KEYS[r..r+2], else KEYS[k]
                         is the unique limit's sorted set; both declared after
                         the pairs, same hash tag)
                        "m": 1 to also return the meta fields}}
Returns  {now, admitted (1/0), factor, {unit, allotment, ...}, member,
          {{counts per "c"}, {limits per "c"}, {counts per "u"}, {limits per "u"},
           {meta}} per scope,
          {{unit, complete (1/0), member, ...} per unique limit whose unit's
           allotment is short of "want"}}
         The last: who each near-full unique limit has counted in its window,
         except those about to leave it (complete = 0, no members: more than
         kmax), so the RCPT decisions know a recipient written to again is free.
         Counted again at the end of the message, such a recipient is still in
         the window if the transaction took less than window/kedge: then the
         window never holds more distinct members than the limit. Unique units need nothing to be
         admitted ("need" 0): a full unique limit still admits mail to those
         already counted.
         A count is what was committed in the window plus what others hold
         reserved (live reservations, this transaction's excluded). A limit is
         the effective one (the plan's, scaled by the factor where scaled = 1;
         -1 for a read-only entry).
         The allotment of a unit is min(want, least left over every limit of
         that unit); admitted = every unit's least left >= need. Only an
         admitted transaction reserves (member: what it stored, "" if nothing);
         only units with a limit are reserved.

Invariant: committed + live reservations <= limit at every admission, so the
messages (recipients, bytes) a window accepts never exceed its limit, whatever
the interleaving (tests/test_limits_interleaving.py drives this on a real
redis-server from three processes).
]==]

-- now, spec, fmt (prelude.lua); fields_of, counter, unique, distinct, UNITS, SUMS,
-- unreserve (window.lua).

-- The live reservations of a scope, per unit; expired ones are removed first.
local function reserved(key, qkey, h)
  local dead = redis.call("ZRANGEBYSCORE", qkey, "-inf", now)
  if #dead > 0 then
    redis.call("ZREMRANGEBYSCORE", qkey, "-inf", now)
    for _, member in ipairs(dead) do
      unreserve(key, qkey, member, h)
    end
  end
  local sum = {}
  for n, unit in ipairs(UNITS) do
    sum[unit] = math.max(0, tonumber(h[SUMS[n]] or "") or 0)
  end
  return sum
end

-- How much of its plan a VPS gets now: relaywarden.limits.model.factor_for, in Lua.
local function factor_of(h, f)
  local warm = 1
  local fs = tonumber(h["fs"] or "")
  -- "wn": only VPSes first seen on or after it warm up (0: every one).
  local wn = tonumber(f["wn"] or 0) or 0
  if f["wp"] > 0 and (wn == 0 or (fs or now) >= wn) then
    local age = fs and math.max(0, now - fs) or 0
    warm = f["ws"] + (1 - f["ws"]) * math.min(1, age / f["wp"])
  end
  local adaptive = 1
  local p = tonumber(h["p"] or "")
  if f["ae"] == 1 and p and p > 0 then
    local pt = tonumber(h["pt"] or "") or now
    local left = p * math.pow(0.5, math.max(0, now - pt) / f["ah"])
    if left >= 0.01 then
      adaptive = math.max(f["am"], 1 - f["as"] * left)
    end
  end
  return warm * adaptive
end

local function effective(limit, scaled, factor)
  if scaled == 1 and factor < 1 then
    return math.max(1, math.floor(limit * factor + 1e-9))
  end
  return limit
end

local hashes, held = {}, {}
local factor = 1
for n, scope in ipairs(spec["s"]) do
  hashes[n] = fields_of(KEYS[2 * n - 1])
  held[n] = reserved(KEYS[2 * n - 1], KEYS[2 * n], hashes[n])
end
for n, scope in ipairs(spec["s"]) do
  if scope["m"] == 1 and spec["f"] then
    factor = factor_of(hashes[n], spec["f"])
    break
  end
end

local least = {}
local out = {}
local sets = {}  -- the unique limits' sorted sets: {unit, key, window, count}
for n, scope in ipairs(spec["s"]) do
  local key, h = KEYS[2 * n - 1], hashes[n]
  local counts, limits, ucounts, ulimits, meta = {}, {}, {}, {}, {}
  for _, c in ipairs(scope["c"]) do
    local unit = c[1]
    local count = counter(h, unit, c[2], c[3]) + (held[n][unit] or 0)
    local limit = c[4] >= 0 and effective(c[4], c[5], factor) or -1
    if limit >= 0 then
      least[unit] = math.min(least[unit] or limit - count, limit - count)
    end
    counts[#counts + 1] = tostring(count)
    limits[#limits + 1] = tostring(limit)
  end
  for _, u in ipairs(scope["u"]) do
    local unit, k = u[1], u[5] or 0
    local counted = k > 0 and distinct(KEYS[k], u[2]) or unique(h, unit, u[2], u[6])
    local count = counted + held[n][unit]
    local limit = u[3] >= 0 and effective(u[3], u[4], factor) or -1
    if limit >= 0 then
      least[unit] = math.min(least[unit] or limit - count, limit - count)
      if k > 0 then
        sets[#sets + 1] = {unit, KEYS[k], u[2], counted}
      end
    end
    ucounts[#ucounts + 1] = tostring(count)
    ulimits[#ulimits + 1] = tostring(limit)
  end
  if scope["m"] == 1 then
    for _, name in ipairs({"fs", "p", "pt", "bm", "br", "bd", "bt", "nb"}) do
      meta[#meta + 1] = h[name] or ""
    end
  end
  out[#out + 1] = {counts, limits, ucounts, ulimits, meta}
end

local admitted = 1
local allot, flat = {}, {}
for _, unit in ipairs(UNITS) do
  if least[unit] ~= nil then
    local need = spec["need"][unit] or 1
    if need > 0 and least[unit] < need then
      admitted = 0
    end
    allot[unit] = math.max(0, math.min(spec["want"][unit] or need, least[unit]))
    flat[#flat + 1] = unit
    flat[#flat + 1] = tostring(allot[unit])
  end
end

local member = ""
if admitted == 1 and #flat > 0 then
  local amounts = {}
  for n, unit in ipairs(UNITS) do
    amounts[n] = allot[unit] or 0
  end
  member = spec["id"] .. " " .. table.concat(amounts, " ")
  local lease = math.ceil(spec["lease"]) + 1
  for n, _ in ipairs(spec["s"]) do
    local key, qkey = KEYS[2 * n - 1], KEYS[2 * n]
    redis.call("ZADD", qkey, now + spec["lease"], member)
    redis.call("EXPIRE", qkey, lease)
    for u, amount in ipairs(amounts) do
      if amount > 0 then
        redis.call("HINCRBY", key, SUMS[u], amount)
      end
    end
    if redis.call("TTL", key) < lease then
      redis.call("EXPIRE", key, lease)
    end
  end
end
-- A unit whose allotment is short: who its limits counted already (free to write to).
local known = {}
for _, set in ipairs(sets) do
  local unit = set[1]
  if allot[unit] < (spec["want"][unit] or 0) then
    if set[4] <= spec["kmax"] then
      local edge = now - set[3] + set[3] / spec["kedge"]
      local row = redis.call("ZRANGEBYSCORE", set[2], fmt(edge), "+inf")
      table.insert(row, 1, 1)
      table.insert(row, 1, unit)
      known[#known + 1] = row
    else
      known[#known + 1] = {unit, 0}
    end
  end
end
return {fmt(now), admitted, fmt(factor), flat, member, out, known}
