"""Faults: a dead or stalled Redis costs one timeout per interval (the circuit
breaker), counted by connections actually attempted, not by wall-clock time; a
reload swaps policy and inventory as one object, and a transaction keeps the
generation it started with."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relaywarden import metrics, pipeline
from relaywarden.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from relaywarden.devstack.redis import RedisServer
from relaywarden.errors import StoreError
from relaywarden.message import normalise_ip
from relaywarden.runtime import Overrides, Runtime
from relaywarden.store import RedisStore, connect
from relaywarden.subjects import parse_subject

SUBJECTS = [parse_subject("vps:203.0.113.7")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rejected() -> float:
    return float(metrics.BREAKER_REJECTED.labels(service="redis")._value.get())


def lookups(store: RedisStore, n: int) -> int:
    """Block lookups that failed (each must fail: Redis is down)."""
    failed = 0
    for _ in range(n):
        with pytest.raises(StoreError):
            store.blocks_for(SUBJECTS)
        failed += 1
    return failed


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """Accepts TCP connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield sock
    finally:
        sock.close()


def connections_made(listener: socket.socket) -> int:
    listener.settimeout(0.2)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return count
        conn.close()
        count += 1


def test_a_silent_redis_costs_one_connection_per_interval(silent_listener: socket.socket) -> None:
    port = silent_listener.getsockname()[1]
    clock = Clock()
    breaker = Breaker(failures=1, interval=5.0, clock=clock)
    store = RedisStore(connect(f"redis://127.0.0.1:{port}/0", 0.2, breaker), "rw")
    before = rejected()
    assert lookups(store, 20) == 20
    assert breaker.state == OPEN
    assert connections_made(silent_listener) == 1  # one timeout, 19 failed fast
    assert rejected() - before == 19
    clock.now += 5.0  # the interval passed: one probe, which times out again
    assert lookups(store, 10) == 10
    assert connections_made(silent_listener) == 1 and breaker.state == OPEN


def test_without_the_breaker_every_call_pays_a_timeout(silent_listener: socket.socket) -> None:
    """The control: what the breaker saves (redis-py also retries on timeouts)."""
    port = silent_listener.getsockname()[1]
    store = RedisStore(connect(f"redis://127.0.0.1:{port}/0", 0.1), "rw")
    lookups(store, 5)
    assert connections_made(silent_listener) >= 5


def test_refused_connections_open_it_too() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    breaker = Breaker(failures=2, interval=5.0, clock=Clock())
    store = RedisStore(connect(f"redis://127.0.0.1:{port}/0", 0.2, breaker), "rw")
    before = rejected()
    lookups(store, 6)
    assert breaker.state == OPEN and rejected() - before >= 4


def test_a_stalled_redis_sigstop_then_sigcont(tmp_path: Path) -> None:
    server = RedisServer()
    url = server.start(tmp_path)
    clock = Clock()
    breaker = Breaker(failures=1, interval=5.0, clock=clock)
    store = RedisStore(connect(url, 0.2, breaker), "rw")
    assert server.proc is not None
    pid = server.proc.pid
    try:
        assert store.blocks_for(SUBJECTS) == [] and breaker.state == CLOSED
        os.kill(pid, signal.SIGSTOP)
        before = rejected()
        lookups(store, 10)
        assert breaker.state == OPEN and rejected() - before == 9
        os.kill(pid, signal.SIGCONT)
        # Still open until the interval has passed: no call reaches Redis yet.
        lookups(store, 3)
        clock.now += 5.0
        assert store.blocks_for(SUBJECTS) == []  # the probe succeeds ...
        assert breaker.state == CLOSED  # ... and closes the circuit
        assert store.blocks_for(SUBJECTS) == []
    finally:
        os.kill(pid, signal.SIGCONT)
        server.stop()


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, interval=2.0, clock=clock)
    breaker.failure(redis.TimeoutError("t"))
    with pytest.raises(redis.ConnectionError):
        breaker.before()
    clock.now += 2.0
    breaker.before()  # the probe
    assert breaker.state == HALF_OPEN
    with pytest.raises(redis.ConnectionError):
        breaker.before()  # others fail fast while it is out
    breaker.success()
    assert breaker.state == CLOSED
    breaker.before()


POLICY_A = """
[redis]
url = "redis://127.0.0.1:1/0"
[plans.alpha]
messages = ["10/1m"]
[[customers]]
id = "cust-a"
plan = "alpha"
networks = ["203.0.113.0/24"]
"""
POLICY_B = POLICY_A.replace("alpha", "beta").replace("cust-a", "cust-b")


def test_reload_swaps_policy_and_inventory_as_one_object(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_A)
    rt = Runtime.start(path, Overrides())
    address = normalise_ip("203.0.113.9")
    mismatches: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            gen = rt.current
            customer = gen.inventory.lookup(address, "")
            if customer is None or customer.plan not in gen.policy.plans:
                mismatches.append(repr(customer))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for n in range(40):
            path.write_text(POLICY_B if n % 2 == 0 else POLICY_A)
            assert rt.reload()
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert mismatches == []
    assert rt.current.inventory.lookup(address, "").id == "cust-a"  # type: ignore[union-attr]


def test_the_timeout_is_the_kernels_and_still_bounds_a_stalled_redis(tmp_path: Path) -> None:
    """Sockets to Redis carry `[redis] timeout` as SO_RCVTIMEO/SO_SNDTIMEO on a
    blocking socket (no poll() before every recv and send, each a GIL hand-over):
    a Redis that stops answering is still a Redis failure, for the hot path's
    pipelines and the breaker alike."""
    server = RedisServer()
    url = server.start(tmp_path)
    breaker = Breaker(failures=1, interval=5.0, clock=Clock())
    client = connect(url, 0.2, breaker)
    assert server.proc is not None
    pid = server.proc.pid
    try:
        assert client.ping()
        conn = client.connection_pool.get_connection()
        try:
            sock = conn._sock  # type: ignore[attr-defined]
            assert sock.gettimeout() is None  # blocking: no poll() in Python
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) != bytes(16)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) != bytes(16)
        finally:
            client.connection_pool.release(conn)
        os.kill(pid, signal.SIGSTOP)
        pipe = client.pipeline(transaction=False)
        pipe.hgetall("rw:b:x")
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            pipeline.execute(pipe)
        assert breaker.state == OPEN
    finally:
        os.kill(pid, signal.SIGCONT)
        server.stop()
