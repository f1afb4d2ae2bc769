"""The lean pipeline executor answers exactly as redis-py's own, against a real
redis-server: reply callbacks, error replies in place, NOSCRIPT, and a dropped
connection retried on a new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from relaywarden import pipeline
from relaywarden.devstack.redis import RedisServer


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    server = RedisServer()
    url = server.start(tmp_path)
    try:
        yield redis.Redis.from_url(url)
    finally:
        server.stop()


def _queue(pipe: Any, sha: str) -> None:
    pipe.hset("h", mapping={"a": "1", "b": "2"})
    pipe.hgetall("h")
    pipe.hgetall("absent")
    pipe.incr("h")  # WRONGTYPE: an error in place, the rest still read
    pipe.evalsha(sha, 1, "k", "x")
    pipe.evalsha("0" * 40, 0)  # NOSCRIPT
    pipe.xadd("s", {"json": "{}"}, maxlen=10, approximate=True)
    pipe.ttl("h")
    pipe.zadd("z", {"m": 1.5})
    pipe.zrange("z", 0, -1, withscores=True)


def _shape(results: list[Any]) -> list[Any]:
    return [
        (type(r).__name__, str(r).split(" ")[0]) if isinstance(r, Exception) else r for r in results
    ]


def test_same_replies_as_redis_py(client: redis.Redis) -> None:
    sha = client.script_load("return {KEYS[1], ARGV[1], 3}")
    ours = client.pipeline(transaction=False)
    _queue(ours, sha)
    got = pipeline.execute(ours)
    client.delete("h", "s", "z")
    theirs = client.pipeline(transaction=False)
    _queue(theirs, sha)
    expected = theirs.execute(raise_on_error=False)
    assert _shape(got[:6]) == _shape(expected[:6])
    assert isinstance(got[6], bytes) and isinstance(expected[6], bytes)  # stream ids differ
    assert got[7:] == expected[7:]
    assert got[1] == {b"a": b"1", b"b": b"2"} and got[9] == [(b"m", 1.5)]
    assert ours.command_stack == []  # spent, as after redis-py's execute


def _hang_up_on_next_connection(
    client: redis.Redis, other: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server hangs up on the next connection the pool hands out."""
    pool = client.connection_pool
    handed_out = pool.get_connection

    def get_connection(*args: Any, **kw: Any) -> Any:
        conn = handed_out(*args, **kw)
        conn.send_command("CLIENT", "ID")
        assert other.client_kill_filter(_id=conn.read_response()) == 1
        monkeypatch.setattr(pool, "get_connection", handed_out)  # only this one
        return conn

    monkeypatch.setattr(pool, "get_connection", get_connection)


@pytest.mark.parametrize("retries", [0, 1])
def test_dropped_connection_follows_the_clients_retry_policy(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    """As redis-py's execute: no retry (the store's clients) raises ConnectionError
    and leaves the pool usable; a retry policy reconnects and sends once more."""
    kwargs = client.connection_pool.connection_kwargs
    other = redis.Redis(host=kwargs["host"], port=kwargs["port"])
    ours = redis.Redis(host=kwargs["host"], port=kwargs["port"], retry=Retry(NoBackoff(), retries))
    try:
        other.set("n", 0)
        _hang_up_on_next_connection(ours, other, monkeypatch)
        pipe = ours.pipeline(transaction=False)
        pipe.incr("n")
        if retries:
            assert pipeline.execute(pipe) == [1]
        else:
            with pytest.raises(redis.ConnectionError):
                pipeline.execute(pipe)
            pipe.incr("n")
            assert pipeline.execute(pipe) == [1]  # the next one finds a live connection
        assert int(other.get("n") or 0) == 1
    finally:
        other.close()
        ours.close()


def test_transactions_go_to_redis_py(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.incr("t")
    pipe.incr("t")
    assert pipeline.execute(pipe) == [1, 2]
