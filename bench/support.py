"""Pieces several benches share: the policy under which no run is ever limited, and
a RedisStore on a redis-server of the bench's own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relaywarden.devstack.redis import RedisServer
from relaywarden.store import RedisStore, connect


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
