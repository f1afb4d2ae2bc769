"""Pieces several benches share: the policy under which no run is ever limited, a
RedisStore on a redis-server of the bench's own, and timing its finish()."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relaywarden.devstack.redis import RedisServer
from relaywarden.store import Outcome, RedisStore, connect


def unlimited_policy(nameserver: str) -> str:
    """Policy sections for a bench: defaults, a plan no run can exhaust, our DNS server."""
    return f"""[dns]
nameservers = ["{nameserver}"]
[plans.default]
messages = ["100000000/1m"]
recipients = ["100000000/1m"]
[limits]
# smtp-source connects from 127.0.0.1, which the default exempts as the relay's
# own mail: measure the rate limits as a customer VPS gets them.
exempt = []
[limits.burst]
enabled = false
[limits.escalation]
enabled = false
"""


@contextmanager
def redis_store(prefix: str) -> Iterator[tuple[RedisStore, Path]]:
    """A RedisStore on a fresh redis-server, and the scratch directory it lives in;
    afterwards the store's finish hooks are cleared, the server stopped and the
    directory removed."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisServer()
    try:
        yield RedisStore(connect(server.start(workdir / "redis"), 5.0)), workdir
    finally:
        RedisStore.finish_hooks.clear()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def finish_us(store: RedisStore, items: list[Outcome], seconds: float) -> float:
    """Microseconds per `store.finish()` over `items`, stopping early after `seconds`."""
    deadline = time.monotonic() + seconds
    started, done = time.perf_counter(), 0
    for item in items:
        store.finish(item)
        done += 1
        if time.monotonic() > deadline:
            break
    return (time.perf_counter() - started) / done * 1e6
