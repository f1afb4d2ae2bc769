"""Property tests: the Lua sliding windows against a plain-Python reference model,
on a real redis-server, with an injected clock."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaywarden.devstack.redis import RedisServer
from relaywarden.limits import scripts
from relaywarden.limits.model import ring_keys

NSUB = 10


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = RedisServer()
    url = server.start(Path(tmp_path_factory.mktemp("redis")))
    try:
        c = redis.Redis.from_url(url)
        scripts.load(c)
        yield c
    finally:
        server.stop()


def lua_count(c: redis.Redis, key: str, window: float, now: float) -> int:
    spec = {"s": [{"c": [["m", window, NSUB]], "u": [], "m": 0}]}
    reply = c.evalsha(scripts.SHA["check"], 1, key, repr(now), json.dumps(spec))
    return int(reply[1][0][0][0])  # type: ignore[index]


def lua_add(c: redis.Redis, key: str, window: float, now: float, amount: int) -> None:
    spec = {"s": [{"c": [["m", window, NSUB, amount]], "u": [], "ttl": 100000}]}
    c.evalsha(scripts.SHA["commit"], 2, key, key + ":q", repr(now), json.dumps(spec))


class Reference:
    """The documented algorithm, written plainly: an exact log of what was admitted."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.g = window / NSUB
        self.log: list[tuple[float, int]] = []

    def bucketed(self, now: float) -> int:
        i = math.floor(now / self.g)
        return sum(n for t, n in self.log if i - NSUB <= math.floor(t / self.g) <= i)

    def exact(self, start: float, end: float) -> int:
        return sum(n for t, n in self.log if start <= t <= end)


steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=30, allow_nan=False), st.integers(1, 3)),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=steps,
    window=st.sampled_from([10.0, 60.0, 90.0]),
    limit=st.integers(1, 12),
    start=st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False),
)
def test_sliding_window_matches_the_model_and_never_admits_more_than_the_limit(
    client: redis.Redis, steps: list[tuple[float, int]], window: float, limit: int, start: float
) -> None:
    key = f"t:{{{uuid.uuid4().hex}}}"
    model = Reference(window)
    now = start
    for gap, amount in steps:
        now += gap
        count = lua_count(client, key, window, now)
        assert count == model.bucketed(now)
        # The documented bound: never under the true last W, never over the last W+g.
        assert model.exact(now - window, now) <= count <= model.exact(now - window - model.g, now)
        if count + amount <= limit:
            lua_add(client, key, window, now, amount)
            model.log.append((now, amount))
            # The promise to the relay: no window of length W holds more than the limit.
            assert model.exact(now - window, now) <= limit


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(
        st.tuples(st.floats(min_value=0, max_value=40, allow_nan=False), st.integers(0, 40)),
        min_size=1,
        max_size=40,
    )
)
def test_unique_counts_cover_the_window_within_the_bound(
    client: redis.Redis, events: list[tuple[float, int]]
) -> None:
    key, window, now = f"t:{{{uuid.uuid4().hex}}}", 60.0, 1.75e9
    seen: list[tuple[float, str]] = []
    for gap, member in events:
        now += gap
        # KEYS: the state hash (and its reservations, for commit.lua), then the
        # unique count's ring of three HyperLogLogs.
        ring = ring_keys(key, "R", window)
        add = {"s": [{"c": [], "u": [["R", window, [f"m{member}"], 0, 3]], "ttl": 1000}]}
        client.evalsha(scripts.SHA["commit"], 5, key, key + ":q", *ring, repr(now), json.dumps(add))
        seen.append((now, f"m{member}"))
        read = {"s": [{"c": [], "u": [["R", window, 0, 2]], "m": 0}]}
        reply = client.evalsha(scripts.SHA["check"], 4, key, *ring, repr(now), json.dumps(read))
        count = int(reply[1][0][1][0])  # type: ignore[index]
        low = len({m for t, m in seen if t >= now - window})
        high = len({m for t, m in seen if t >= now - 1.5 * window})
        assert low - 1 <= count <= high + 1  # HyperLogLog is near exact at this size


def test_keys_expire(client: redis.Redis) -> None:
    key = f"t:{{{uuid.uuid4().hex}}}"
    lua_add(client, key, 60.0, 1.75e9, 1)
    assert 0 < client.ttl(key) <= 100000
