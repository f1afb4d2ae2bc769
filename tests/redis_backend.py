"""Which real Redis the shared test helpers start: one redis-server, or with
RELAYWARDEN_TEST_REDIS=cluster a real 3-master Redis Cluster (devstack's
ClusterServers), so the same limits, escalation, blocking, campaign and outcome
tests run against both. `make test` runs those files both ways."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from relaywarden.devstack.procs import StopsOnExit
from relaywarden.devstack.redis import ClusterServers, RedisServer
from relaywarden.redisurl import CLUSTER_SCHEME
from relaywarden.store import connect, is_cluster

CLUSTER = os.environ.get("RELAYWARDEN_TEST_REDIS", "") == "cluster"


def start_redis(workdir: Path) -> tuple[str, StopsOnExit]:
    """Start the test's own Redis (or Cluster) under `workdir`: (URL, what to stop)."""
    server: RedisServer | ClusterServers = ClusterServers() if CLUSTER else RedisServer()
    return server.start(workdir), server


# -- every key a script touches is declared in KEYS ------------------------------
# The commands our scripts call, by where their keys are: the first argument, every
# argument, or none. A command the guard does not know is an error too, so a new
# one cannot slip past it.
_FIRST = [
    "GET",
    "SET",
    "EXPIRE",
    "TTL",
    "PERSIST",
    "HGET",
    "HSET",
    "HSETNX",
    "HEXISTS",
    "HMGET",
    "HGETALL",
    "HDEL",
    "HINCRBY",
    "SADD",
    "ZADD",
    "ZREM",
    "ZCARD",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZREMRANGEBYSCORE",
    "ZCOUNT",
    "ZREMRANGEBYRANK",
    "PFADD",
]
_ALL = ["EXISTS", "DEL", "PFCOUNT"]
_NONE = ["TIME"]

# The scripts that declare every key they touch. campaign.lua does not: a
# campaign's keys are named by its id, which the script only learns by reading
# the band keys (all under the one {cmp} hash tag, so one slot; see its header).
DECLARING = ["check", "reserve", "commit", "outcomes", "logins"]


def _lua_set(names: list[str]) -> str:
    return "{" + ", ".join(f"{n}=true" for n in names) + "}"


_GUARD = f"""
local __declared = {{}}
for _, k in ipairs(KEYS) do __declared[k] = true end
local __FIRST, __ALL, __NONE = {_lua_set(_FIRST)}, {_lua_set(_ALL)}, {_lua_set(_NONE)}
local function __guard(kind, cmd, ...)
  local name = string.upper(cmd)
  local args = {{...}}
  local keys
  if __FIRST[name] then keys = {{args[1]}}
  elseif __ALL[name] then keys = args
  elseif __NONE[name] then keys = {{}}
  else error("UNDECLARED-GUARD does not know the command " .. name) end
  for _, k in ipairs(keys) do
    if not __declared[k] then
      error("UNDECLARED key " .. tostring(k) .. " (" .. name .. ") not in KEYS")
    end
  end
  return redis[kind](cmd, ...)
end
"""


def guarded_source(text: str) -> str:
    """A script's text with every redis.call / redis.pcall checked against KEYS."""
    body = text.replace("redis.call(", '__guard("call", ').replace(
        "redis.pcall(", '__guard("pcall", '
    )
    return _GUARD + body


def guard_scripts(names: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Swap the production scripts (all, or `names`) for guarded copies, in place:
    every caller (limits, campaigns, outcomes, logins) runs them by SHA through
    relaywarden.limits.scripts. Returns what to put back (`unguard_scripts`)."""
    import hashlib

    from relaywarden.limits import scripts

    saved = {}
    for name in names or list(scripts._SOURCES):
        saved[name] = (scripts._SOURCES[name], scripts.SHA[name])
        text = guarded_source(scripts._SOURCES[name])
        scripts._SOURCES[name] = text
        scripts.SHA[name] = hashlib.sha1(text.encode()).hexdigest()
    return saved


def unguard_scripts(saved: dict[str, tuple[str, str]]) -> None:
    from relaywarden.limits import scripts

    for name, (text, sha) in saved.items():
        scripts._SOURCES[name] = text
        scripts.SHA[name] = sha


def url_of(client: Any) -> str:
    """The URL of the Redis (or Cluster) `client` talks to."""
    if is_cluster(client):
        return CLUSTER_SCHEME + ",".join(f"{n.host}:{n.port}" for n in client.get_primaries())
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def fresh_client(client: Any) -> redis.Redis:
    """A client of its own (own pool) to the same Redis or Cluster as `client`."""
    if is_cluster(client):
        return connect(url_of(client), 5.0)
    kw = client.connection_pool.connection_kwargs
    return redis.Redis(connection_pool=redis.ConnectionPool(**kw))
