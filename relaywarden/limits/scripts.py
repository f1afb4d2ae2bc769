"""The Lua scripts, loaded once per Redis and called by SHA (EVALSHA).

Scripts are queued on pipelines shared with other commands, so redis-py's
`Script` (which checks SCRIPT EXISTS before every pipeline: an extra round trip)
is not used. Instead a pipeline is run as is; if Redis answers NOSCRIPT (after a
restart or a failover to a replica that never saw the script) the scripts are
loaded and the pipeline is run once more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any

import redis
from redis.cluster import ClusterPipeline
from redis.exceptions import NoScriptError, ResponseError

from relaywarden import pipeline
from relaywarden.store import RedisStore, redis_errors


def _read(name: str) -> str:
    return resources.files("relaywarden.lua").joinpath(f"{name}.lua").read_text("utf-8")


# Each script is the shared prelude, the window readers where it reads counters,
# and its own body: one text, one SHA. outcomes.lua and logins.lua:
# relaywarden/outcomes and relaywarden/logins; campaign.lua: relaywarden/content.
_PARTS = {
    "check": ("prelude", "window", "check"),
    "reserve": ("prelude", "window", "reserve"),
    "commit": ("prelude", "window", "commit"),
    "campaign": ("prelude", "campaign"),
    "outcomes": ("prelude", "outcomes"),
    "logins": ("prelude", "logins"),
}
_SOURCES = {name: "".join(_read(part) for part in parts) for name, parts in _PARTS.items()}
SHA = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in _SOURCES.items()}

PipelineBuilder = Callable[["redis.client.Pipeline"], None]


def evalsha(pipe: redis.client.Pipeline, name: str, keys: list[str], args: list[str]) -> None:
    command = ("EVALSHA", SHA[name], len(keys), *keys, *args)
    if isinstance(pipe, ClusterPipeline):
        # On a Cluster pipeline redis-py (8.1) refuses pipe.evalsha (redis-py
        # #2914) and, for a command not in its policy table, asks the server
        # COMMAND GETKEYS first: one more round trip per script. Its own slot of
        # the KEYS (refused here if they span slots) and its own slot map name the
        # node instead; after a MOVED it routes the retry itself.
        slot = pipe.determine_slot(*command[: 3 + len(keys)])
        node = pipe.nodes_manager.get_node_from_slot(slot)
        pipe.execute_command(*command, target_nodes=node)
        return
    pipe.execute_command(*command)  # type: ignore[no-untyped-call]


def load(client: redis.Redis) -> None:
    for text in _SOURCES.values():
        client.script_load(text)


RedisStore.script_loaders.append(load)


def is_noscript(result: object) -> bool:
    return isinstance(result, NoScriptError) or (
        isinstance(result, ResponseError) and str(result).startswith("NOSCRIPT")
    )


def run(client: redis.Redis, build: PipelineBuilder, what: str) -> list[Any]:
    """Build and run one pipeline; reload the scripts and retry once on NOSCRIPT.

    Replies of failed commands come back as exceptions in the list: the caller
    decides which matter. Connection errors raise StoreError.
    """
    with redis_errors(what):
        results = _execute(client, build)
        if any(is_noscript(r) for r in results):
            load(client)
            results = _execute(client, build)
    for result in results:
        if isinstance(result, redis.RedisError):
            raise_store(what, result)
    return results


def _execute(client: redis.Redis, build: PipelineBuilder) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    build(pipe)
    return pipeline.execute(pipe)


def raise_store(what: str, exc: Exception) -> None:
    with redis_errors(what):
        raise exc
