--[==[ RelayWarden: count delivery outcomes and advance the log position (outcomes.lua).

Called by `relaywarden watch` once per batch of log lines. Counting and moving
the position happen in one script, so a watcher killed at any point has either
counted a batch and moved past it, or neither: after a restart it neither skips
nor counts a line twice.

KEYS[1]  the watcher's position hash for this relay (fields inode, offset, path)
KEYS[i]  (i >= 2) an outcome hash: a subject's window counters or its 24-hour chart
ARGV[1]  "" for Redis TIME, else seconds since the epoch (an injected test clock)
ARGV[2]  JSON: {"from": [inode, offset],            where this batch starts: the
                                                    position must still be there
                "to":   [inode, offset, path],      where it ends
                "s":    [{"c": [[code, window, nsub, amount], ...], "ttl": seconds}, ...]}
                                                    one entry per KEYS[i], i >= 2
         Without "from" and "to" (the complaints listener) only the counts are
         added; KEYS[1] is then not touched.
         On a Redis Cluster a batch's subjects sit in many slots, so no one script
         can count them all and move the position. The watcher then moves the
         position with "pending" (the batch's counts as JSON, id "g"): stored in
         the position hash in the same step, nothing counted here. Then one call
         per slot with "once": g (KEYS[1] a marker hash in that slot: counted
         only if g is not in it yet), then "done": g clears "pending". A watcher
         that dies in between finds "pending" at its next step and applies it
         again: each slot counts it once (outcomes/watcher.py).
Returns  {1, now} when counted (or already counted, "once"); {0, inode, offset}
         when the stored position is not "from" (another watcher moved it):
         nothing is counted; {2} when a pending batch must be applied first.

Counters are the sliding-window ring of check.lua: field "<code><window>:<slot>"
= "<bucket>:<count>", nsub+1 slots per (code, window); a reader sums the buckets
i-nsub .. i (relaywarden/outcomes/counters.py), within [count over W, count over W+W/nsub].
]==]

if spec["done"] then
  if redis.call("HGET", KEYS[1], "pgen") == spec["done"] then
    redis.call("HDEL", KEYS[1], "pending", "pgen")
  end
  return {1, fmt(now)}
end
if spec["once"] then
  if redis.call("HSETNX", KEYS[1], spec["once"], 1) == 0 then
    return {1, fmt(now)}
  end
  redis.call("EXPIRE", KEYS[1], 86400)
end

local from = spec["from"]
if from and spec["pending"] and redis.call("HEXISTS", KEYS[1], "pending") == 1 then
  return {2}
end
if from then
  local pos = redis.call("HMGET", KEYS[1], "inode", "offset")
  local stored_inode = tonumber(pos[1]) or 0
  local stored_offset = tonumber(pos[2]) or 0
  if stored_inode ~= from[1] or stored_offset ~= from[2] then
    return {0, fmt(stored_inode), fmt(stored_offset)}
  end
end

local function add(key, code, window, nsub, amount)
  local g = window / nsub
  local i = math.floor(now / g)
  local field = code .. fmt(window) .. ":" .. (i % (nsub + 1))
  local v = redis.call("HGET", key, field)
  local total = amount
  if v then
    local b, n = string.match(v, "^(%-?%d+):(%d+)$")
    if tonumber(b) == i then
      total = total + tonumber(n)
    end
  end
  redis.call("HSET", key, field, string.format("%d:%d", i, total))
end

for n, scope in ipairs(spec["s"]) do
  local key = KEYS[n + 1]
  for _, c in ipairs(scope["c"]) do
    add(key, c[1], c[2], c[3], c[4])
  end
  redis.call("EXPIRE", key, scope["ttl"])
end
local to = spec["to"]
if to then
  redis.call("HSET", KEYS[1], "inode", fmt(to[1]), "offset", fmt(to[2]), "path", to[3])
  if spec["pending"] then
    redis.call("HSET", KEYS[1], "pending", spec["pending"], "pgen", spec["pgen"])
  end
end
return {1, fmt(now)}
