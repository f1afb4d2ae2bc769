--[==[ RelayWarden: the client networks a SASL login was used from (logins.lua).

Queued on the MAIL FROM pipeline (no round trip of its own) for an
authenticated message: records this message's network and returns the login's
networks within the window, so the spread is judged including this message.

KEYS[1]  the login's sorted set: member = network ("198.51.100.0/24"), score =
         when it was last seen. The network is computed by the milter from the
         client address Postfix saw; nothing the client wrote.
ARGV[1]  "" for Redis TIME, else seconds since the epoch (an injected test clock)
ARGV[2]  JSON: {"m": network, "w": window seconds, "cap": most members kept,
               "show": how many of the newest networks to return}
Returns  {now, count, {network, last seen, ...}}: the count of networks in the
         window and the newest "show" of them, newest last.

Exact (a set, not a HyperLogLog): a login used from more than a few dozen
networks is already a finding, so the set is capped at "cap" members (the
oldest go first) and memory per login stays bounded.
]==]

local key = KEYS[1]
redis.call("ZADD", key, now, spec["m"])
redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. fmt(now - spec["w"]))
local size = redis.call("ZCARD", key)
if size > spec["cap"] then
  redis.call("ZREMRANGEBYRANK", key, 0, size - spec["cap"] - 1)
end
redis.call("EXPIRE", key, math.ceil(spec["w"]) + 1)
local count = math.min(size, spec["cap"])
return {fmt(now), count, redis.call("ZRANGE", key, -spec["show"], -1, "WITHSCORES")}
