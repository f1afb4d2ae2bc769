--[==[ RelayWarden: read the rate-limit state of one group of subjects (check.lua).

Called once at MAIL FROM (in the same pipeline as the block lookups) and by
`relaywarden status`. Read-only: nothing is counted until the message has been
decided (commit.lua), so a refused or aborted transaction costs nothing.

KEYS[i]  the state hash of scope i (a VPS, a customer, a SASL login, a sender
         or the global ceiling). All KEYS of one call share a hash tag (the
         customer's, or the VPS's for a VPS in no inventory), so the call runs on
         one Redis Cluster slot. After them, the keys of the unique counts (a
         unique limit's sorted set, or a ring of three HyperLogLogs, see
         window.lua), the same tag: every key a script touches is in KEYS.
ARGV[1]  "" to take the time from Redis TIME; else seconds since the epoch.
         Tests inject a clock this way; production never passes one, so time
         never mixes client and server clocks.
ARGV[2]  JSON: {"s": [scope, ...]} in KEYS order, each scope
           {"c": [[unit, window, nsub], ...],   counters to read
            "u": [[unit, window, k, r], ...],   unique counts to read: k = 0, the
                                                HyperLogLogs KEYS[r..r+2]; else
                                                KEYS[k], a unique limit's sorted set
                                                (exact; commit.lua)
            "m": 1}                             1: also return the meta fields

Returns  {now, {scope result, ...}} with each scope result
           {{count per "c" entry}, {count per "u" entry}, {meta values}}
         meta = fields fs p pt bm br bd bt nb (first seen; penalty and its time;
         baseline rates of messages, new recipients, new domains and their time;
         automatic blocks so far), "" where unset. Numbers as strings.

Sliding window (counters). A window W is cut into nsub sub-buckets of width
g = W/nsub; bucket b holds what was committed during [b*g, (b+1)*g). The hash
keeps nsub+1 slots per (unit, window) as a ring: field "<unit><W>:<b mod
(nsub+1)>" = "<b>:<count>", so a unit never holds more than nsub+1 fields and a
slot left from an older round is recognised by its bucket number and ignored.
The count at time t (bucket i = floor(t/g)) is the sum of buckets i-nsub .. i,
which is exactly what was committed during [(i-nsub)*g, t]. That interval
contains the true window [t-W, t] and lies inside [t-W-g, t], so:
    true count over the last W  <=  count  <=  true count over the last W+g.
The count never under-counts: no interval of length W, at a window edge or
anywhere else, ever admits more than the limit. The price: a sender may be
refused up to g (W/nsub) early. The property tests check both bounds against an
exact event log.

Unique counts use the same scheme with 2 sub-buckets per window, one HyperLogLog
per bucket, counted as the union of buckets i-2 .. i (PFCOUNT of several keys):
at least the distinct members of the last W, at most those of the last 1.5 W,
plus HyperLogLog's own standard error of 0.81%.
]==]

-- now, spec, fmt (prelude.lua); fields_of, counter, unique, distinct (window.lua).
local META = {"fs", "p", "pt", "bm", "br", "bd", "bt", "nb"}

local out = {}
for n, scope in ipairs(spec["s"]) do
  local key = KEYS[n]
  local counts, uniques, meta = {}, {}, {}
  local h = fields_of(key)
  for _, c in ipairs(scope["c"]) do
    counts[#counts + 1] = tostring(counter(h, c[1], c[2], c[3]))
  end
  for _, u in ipairs(scope["u"]) do
    local k = u[3] or 0
    local count = k > 0 and distinct(KEYS[k], u[2]) or unique(h, u[1], u[2], u[4])
    uniques[#uniques + 1] = tostring(count)
  end
  if scope["m"] == 1 then
    for _, name in ipairs(META) do
      meta[#meta + 1] = h[name] or ""
    end
  end
  out[#out + 1] = {counts, uniques, meta}
end
return {fmt(now), out}
