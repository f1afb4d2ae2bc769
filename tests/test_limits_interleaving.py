"""Admission under any interleaving: many transactions from one VPS, spread over
three milter processes that share one real redis-server, with aborts and crashes
mixed in. Each process runs the real adapter (tests/milter_worker.py); the test
chooses the order of every callback of every transaction, and an injected clock.

What must hold: in no interval of a window's length do accepted messages,
recipients or bytes exceed the limit, and a crashed transaction's reservation
stops counting once its lease has run out.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import Milter
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaywarden.devstack.redis import RedisServer
from tests.mail import message
from tests.milter_worker import serve

WINDOW = 60.0
LIMITS = {"messages": 8, "recipients": 20, "bytes": 6000}
LEASE = 300.0
RESERVED_RCPTS = 4
POLICY = f"""
[plans.default]
messages = ["{LIMITS["messages"]}/1m"]
recipients = ["{LIMITS["recipients"]}/1m"]
bytes = ["{LIMITS["bytes"]}/1m"]

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.escalation]
enabled = false

[limits.reservation]
recipients = {RESERVED_RCPTS}
lease = "5m"

[limits.inventory]
refresh = "1h"
"""
VPS = "203.0.113.50"
WORKERS = 3


class Worker:
    """One milter process; `call` runs one callback there and waits for its answer."""

    def __init__(self, ctx: Any, policy: Path, url: str) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, str(policy), url), daemon=True)
        self.proc.start()
        assert self.conn.poll(60), "milter worker did not start"
        assert self.conn.recv() == "ready"

    def call(self, op: str, clock: float, tid: int = 0, arg: Any = None) -> Any:
        self.conn.send((op, repr(clock), tid, arg))
        assert self.conn.poll(30), f"milter worker did not answer {op}"
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop", "", 0, None))
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)


@dataclass
class Cluster:
    url: str
    policy: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.workers = [Worker(ctx, self.policy, self.url) for _ in range(WORKERS)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("interleave")
    server = RedisServer()
    url = server.start(tmp / "redis")
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    running = Cluster(url, policy)
    try:
        running.start()
        yield running
    finally:
        for worker in running.workers:
            worker.stop()
        server.stop()


@dataclass
class Tx:
    worker: int
    rcpts: int
    end: str  # "eom", "abort" or "crash"
    pad: int
    declare: str  # SIZE: "exact", "none" or "under" (a client that lies)


@dataclass
class Accepted:
    at: float
    rcpts: int
    size: int


def _body(tid: int, pad: int) -> bytes:
    return message(subject=f"tx {tid}", body=b"x" * pad + b"\r\n")


def _declared(tx: Tx, size: int) -> int:
    return {"exact": size, "none": 0, "under": size // 2}[tx.declare]


def run_schedule(c: Cluster, txs: list[Tx], rng: random.Random, start: float) -> float:
    """Drive every transaction's callbacks in an order drawn from `rng`; check the
    windows; returns the clock at the end."""
    client = redis.Redis.from_url(c.url)
    client.flushdb()
    now = start
    steps: dict[int, list[str]] = {
        n: ["mail", *["rcpt"] * tx.rcpts, tx.end] for n, tx in enumerate(txs)
    }
    rcpt_ok = {n: 0 for n in range(len(txs))}
    accepted: list[Accepted] = []
    while steps:
        if rng.random() < 0.1:
            now += rng.uniform(0, 8)
        tid = rng.choice(list(steps))
        tx, op = txs[tid], steps[tid].pop(0)
        worker = c.workers[tx.worker]
        data = _body(tid, tx.pad)
        size = len(data.partition(b"\r\n\r\n")[2])
        if op == "mail":
            arg = {"ip": VPS, "from": "orders@shop.example", "size": _declared(tx, size)}
            if worker.call("mail", now, tid, arg) != Milter.CONTINUE:
                del steps[tid]  # refused at MAIL FROM: the transaction is over
                continue
        elif op == "rcpt":
            if worker.call("rcpt", now, tid, f"r{tid}-{len(steps[tid])}@example.org") == (
                Milter.CONTINUE
            ):
                rcpt_ok[tid] += 1
        elif op == "eom" and rcpt_ok[tid] == 0:
            worker.call("abort", now, tid)  # no recipient: Postfix never sends DATA
        elif op == "eom":
            status, seen = worker.call("eom", now, tid, data)
            if status == Milter.ACCEPT:
                accepted.append(Accepted(now, rcpt_ok[tid], seen))
        else:
            worker.call(op, now, tid)
        if not steps[tid]:
            del steps[tid]
    assert_windows(accepted)
    return now


def assert_windows(accepted: list[Accepted]) -> None:
    for last in accepted:
        inside = [a for a in accepted if last.at - WINDOW <= a.at <= last.at]
        totals = {
            "messages": len(inside),
            "recipients": sum(a.rcpts for a in inside),
            "bytes": sum(a.size for a in inside),
        }
        for unit, total in totals.items():
            assert total <= LIMITS[unit], f"{total} {unit} accepted within {WINDOW}s at {last.at}"


def assert_budget_back(c: Cluster, now: float) -> None:
    """Once every lease and the window have passed, the whole budget is free again:
    exactly `messages` one-recipient messages are accepted, the next is refused."""
    worker, results = c.workers[0], []
    for n in range(LIMITS["messages"] + 1):
        tid = 10_000 + n
        data = message(subject="after", body=b"ok\r\n")
        arg = {"ip": VPS, "from": "orders@shop.example", "size": 4}
        if worker.call("mail", now, tid, arg) != Milter.CONTINUE:
            results.append("refused")
            continue
        assert worker.call("rcpt", now, tid, "late@example.org") == Milter.CONTINUE
        results.append(
            "accepted" if worker.call("eom", now, tid, data)[0] == Milter.ACCEPT else "x"
        )
    assert results == ["accepted"] * LIMITS["messages"] + ["refused"]


one_tx = st.builds(
    Tx,
    worker=st.integers(0, WORKERS - 1),
    rcpts=st.integers(1, 6),
    end=st.sampled_from(["eom", "eom", "eom", "abort", "crash"]),
    pad=st.integers(0, 1500),
    declare=st.sampled_from(["exact", "exact", "none", "under"]),
)
# Few transactions find the small orderings; many (up to 100 open at once) the crowds.
transactions = st.one_of(
    st.lists(one_tx, min_size=1, max_size=12), st.lists(one_tx, min_size=40, max_size=100)
)


@pytest.mark.timeout(900)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(txs=transactions, rng=st.randoms(use_true_random=False))
def test_no_interleaving_of_three_milters_admits_more_than_the_limit(
    cluster: Cluster, txs: list[Tx], rng: random.Random
) -> None:
    start = 1_800_000_000.0
    end = run_schedule(cluster, txs, rng, start)
    assert_budget_back(cluster, end + LEASE + WINDOW + 1)


def test_the_parallel_burst_of_the_issue_admits_exactly_the_limit(cluster: Cluster) -> None:
    """100 transactions open at once over three processes: MAIL FROM for all, then
    their recipients and ends. Today's read-then-commit admitted every one."""
    txs = [Tx(n % WORKERS, 3, "eom", 100, "exact") for n in range(100)]
    order = [(tid, "mail") for tid in range(100)]
    order += [(tid, "rcpt") for _ in range(3) for tid in range(100)]
    order += [(tid, "eom") for tid in range(100)]
    redis.Redis.from_url(cluster.url).flushdb()
    now, admitted, rcpts, accepted = 1_800_000_000.0, set(), 0, 0
    for tid, op in order:
        worker = cluster.workers[txs[tid].worker]
        if op == "mail":
            arg = {"ip": VPS, "from": "orders@shop.example", "size": 200}
            if worker.call("mail", now, tid, arg) == Milter.CONTINUE:
                admitted.add(tid)
        elif tid in admitted and op == "rcpt":
            rcpts += worker.call("rcpt", now, tid, f"r{tid}-{rcpts}@example.org") == (
                Milter.CONTINUE
            )
        elif tid in admitted:
            accepted += worker.call("eom", now, tid, _body(tid, 100))[0] == Milter.ACCEPT
    # Each admitted transaction holds one message and 4 recipients ([limits.reservation]):
    # 20 recipients a minute admit 5 at once, whatever the message limit says.
    assert len(admitted) == min(LIMITS["messages"], LIMITS["recipients"] // RESERVED_RCPTS)
    assert accepted == len(admitted) and rcpts == 3 * len(admitted)


def test_a_crashed_transaction_gives_its_reservation_back_at_the_lease(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A milter process killed mid-transaction (SIGKILL, no callback runs): its
    reservations hold until their lease ends, then the budget is whole again."""
    redis.Redis.from_url(cluster.url).flushdb()
    now = 1_800_000_000.0
    doomed = Worker(multiprocessing.get_context("spawn"), cluster.policy, cluster.url)
    try:
        arg = {"ip": VPS, "from": "orders@shop.example", "size": 100}
        admitted = [doomed.call("mail", now, tid, arg) for tid in range(LIMITS["messages"])]
        held = admitted.count(Milter.CONTINUE)
        assert held == LIMITS["recipients"] // RESERVED_RCPTS  # the rest: budget all held
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.join(10)
    finally:
        doomed.stop()
    other = cluster.workers[1]
    assert other.call("reservations", now) == held
    # Within the lease the dead process's reservations still count ...
    assert other.call("mail", now + LEASE - 1, 1, arg) == Milter.TEMPFAIL
    # ... after it they are gone, and are cleared from Redis by the next admission.
    assert other.call("mail", now + LEASE + 1, 2, arg) == Milter.CONTINUE
    assert other.call("reservations", now + LEASE + 1) == 1
    other.call("abort", now + LEASE + 1, 2)
    assert other.call("reservations", now + LEASE + 1) == 0
