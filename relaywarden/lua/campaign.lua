--[==[ RelayWarden: record one copy of a campaign and read its totals (campaign.lua).

Queued by the content hook on the end-of-message pipeline (one round trip with
the decision event and the rate-limit commit). The totals it returns include
this message, so the copy that crosses a threshold is itself stopped.

KEYS[1..n]  band keys "<p>:cmp:{cmp}:b:<band>" of this message's MinHash LSH
            bands: each maps to the campaign id that first used the band.
KEYS[n+1]   the index of campaigns, a sorted set id -> last seen.
ARGV[1]     "" for Redis TIME, else an injected clock (prelude.lua).
ARGV[2]     JSON {"c": "<p>:cmp:{cmp}:c:" (campaign key prefix),
                  "b": [band, ...] (KEYS order), "w": window seconds,
                  "v": VPS member, "u": customer member, "r": recipients,
                  "s": sample subject, "f": sample sender, "d": URL domains}
Returns     {id, distinct VPSes, distinct customers, recipients, messages,
             first seen, blocked (0/1)}

Campaign id: the id of the first band already known, else this message's first
band (a new campaign). Its state, under the same hash tag as KEYS (one slot on
a Cluster; the id is only known once a band is read, so these keys are derived
here): a hash "<c><id>" (first, subject, sender, domains, msgs, rcpts,
blocked), HyperLogLogs "<c><id>:v" (VPSes) and ":u" (customers), a set ":b" of
its bands. The window is anchored at the first sighting: every key expires
`w` seconds after it, unless the campaign is blocked (then they persist until
released; campaigns_admin in content/campaigns.py does both).
]==]

local n = #spec.b
local id = nil
for i = 1, n do
  local v = redis.call("GET", KEYS[i])
  if v then
    id = v
    break
  end
end
if not id then
  id = spec.b[1]
end
local c = spec.c .. id
local blocked = redis.call("HGET", c, "blocked") == "1"
if redis.call("EXISTS", c) == 0 then
  redis.call("HSET", c, "first", fmt(now), "subject", spec.s, "sender", spec.f,
    "domains", spec.d, "msgs", 0, "rcpts", 0, "blocked", 0)
  redis.call("EXPIRE", c, spec.w)
end
local ttl = redis.call("TTL", c)
for i = 1, n do
  if ttl > 0 then
    redis.call("SET", KEYS[i], id, "NX", "EX", ttl)
  else
    redis.call("SET", KEYS[i], id, "NX")
  end
end
redis.call("SADD", c .. ":b", unpack(spec.b))
redis.call("PFADD", c .. ":v", spec.v)
redis.call("PFADD", c .. ":u", spec.u)
local msgs = redis.call("HINCRBY", c, "msgs", 1)
local rcpts = redis.call("HINCRBY", c, "rcpts", spec.r)
if ttl > 0 then
  redis.call("EXPIRE", c .. ":b", ttl)
  redis.call("EXPIRE", c .. ":v", ttl)
  redis.call("EXPIRE", c .. ":u", ttl)
end
redis.call("ZADD", KEYS[n + 1], now, id)
return {id, redis.call("PFCOUNT", c .. ":v"), redis.call("PFCOUNT", c .. ":u"), rcpts, msgs,
  redis.call("HGET", c, "first"), blocked and 1 or 0}
