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
Returns  {1, now} when counted; {0, inode, offset} when the stored position is
         not "from" (another watcher moved it): nothing is counted.

Counters are the sliding-window ring of check.lua: field "<code><window>:<slot>"
= "<bucket>:<count>", nsub+1 slots per (code, window); a reader sums the buckets
i-nsub .. i (relaywarden/outcomes/counters.py), within [count over W, count over W+W/nsub].
]==]

local from = spec["from"]
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
end
return {1, fmt(now)}
