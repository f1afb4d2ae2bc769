--[==[ RelayWarden: the opening every script shares (prelude.lua).

scripts.py puts this in front of check.lua and commit.lua before loading them,
so both read time and their arguments the same way:
  now   ARGV[1] == "" : Redis TIME (production);
        else ARGV[1] as seconds since the epoch (an injected clock, tests only).
        Never a client clock mixed with the server's.
  spec  ARGV[2] decoded from JSON.
  fmt   a number as text that reads back as the same double.
]==]

local now
if ARGV[1] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local spec = cjson.decode(ARGV[2])

local function fmt(x)
  return string.format("%.17g", x)
end

