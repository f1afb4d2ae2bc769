"""`[redis] url = "redis+sentinel://…/SERVICE"`: redis-py's Sentinel client against
a real Sentinel watching a master with one replica, the real adapter on top.
A failover while sending: every answer is 250 or the fail mode's 451 4.3.0, and
on the new master every message answered 250 is counted (the counters carried
over, and a commit that met a master without the scripts loaded them and ran)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest
import redis
from Milter.testctx import TestCtx as MilterCtx

from relaywarden.devstack.procs import LOOPBACK, poll_until
from relaywarden.devstack.redis import RedisServer, SentinelServer
from relaywarden.limits.status import subject_status
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.runtime import Overrides, Runtime
from relaywarden.subjects import parse_subject
from tests.mail import message
from tests.milter_ctx import ctx_opts, deliver, install, open_ctx

LIMIT = 500
POLICY = f"""
[plans.default]
messages = ["{LIMIT}/1h"]

[checks.sender]
enabled = false

[limits.inventory]
refresh = "1h"
"""


def _offset(port: int) -> int:
    info: dict[str, Any] = redis.Redis(host=LOOPBACK, port=port).info("replication")
    return int(info.get("master_repl_offset", -1))


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[str, RedisServer, RedisServer, SentinelServer]]:
    master = RedisServer()
    master.start(tmp_path / "master")
    assert master.port is not None
    replica = RedisServer(options={"replicaof": f"{LOOPBACK} {master.port}"})
    started: list[Any] = [master]
    try:
        replica.start(tmp_path / "replica")
        started.append(replica)
        watcher = SentinelServer(master.port)
        url = watcher.start(tmp_path / "sentinel")
        started.append(watcher)
        client = redis.Redis(host=LOOPBACK, port=watcher.port)
        poll_until(
            lambda: len(client.execute_command("SENTINEL", "REPLICAS", watcher.service)) == 1,
            30,
            "the Sentinel to see the replica",
        )
        yield url, master, replica, watcher
    finally:
        for proc in reversed(started):
            proc.stop()


def send(n: int) -> str:
    ctx = open_ctx("203.0.113.70")
    try:
        if ctx._envfrom("<orders@shop.example>") != Milter.CONTINUE:
            return " ".join(ctx._reply[:2])
        if ctx._envrcpt("<buyer@example.org>") != Milter.CONTINUE:
            return " ".join(ctx._reply[:2])
        status = deliver(ctx, message(subject=f"sentinel {n}"))
        return "250" if status == Milter.ACCEPT else " ".join(ctx._reply[:2])
    finally:
        ctx._close()


def test_a_failover_while_sending_follows_the_fail_mode_and_keeps_the_counters(
    sentinel: tuple[str, RedisServer, RedisServer, SentinelServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, master, replica, watcher = sentinel
    monkeypatch.setattr(MilterCtx, "default_opts", ctx_opts())
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    rt = Runtime.start(policy, Overrides(redis_url=url))
    install(rt)
    assert [send(n) for n in range(3)] == ["250"] * 3
    assert master.port is not None and replica.port is not None
    poll_until(lambda: _offset(replica.port) == _offset(master.port), 30, "replication")

    sentinels = redis.Redis(host=LOOPBACK, port=watcher.port)
    sentinels.execute_command("SENTINEL", "FAILOVER", watcher.service)
    answers: list[str] = []

    def promoted() -> bool:
        answers.append(send(100 + len(answers)))
        addr = sentinels.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", watcher.service)
        return int(addr[1]) == replica.port and answers[-1] == "250"

    poll_until(promoted, 60, "the failover and a message through the new master")
    # During the failover: 250 or the configured fail mode (tempfail), nothing else.
    assert set(answers) <= {"250", "451 4.3.0"}, answers
    accepted = 3 + answers.count("250")
    report = subject_status(rt.store, rt.policy, parse_subject("vps:203.0.113.70"))
    count = next(w["count"] for w in report["windows"] if w["unit"] == "messages")
    assert count == accepted


def test_a_bad_sentinel_url_is_refused_with_its_reason() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict({"redis": {"url": "redis+sentinel://127.0.0.1:26379"}})
    assert "service" in str(caught.value)


def test_a_dead_master_behind_the_sentinel_fails_fast_behind_the_breaker(
    sentinel: tuple[str, RedisServer, RedisServer, SentinelServer],
) -> None:
    from relaywarden.breaker import CLOSED, OPEN, Breaker, CircuitOpen
    from relaywarden.store import connect

    url, master, _, _ = sentinel
    now = [0.0]
    breaker = Breaker(failures=1, interval=5.0, clock=lambda: now[0], name="redis-sentinel-test")
    client = connect(url, 1.0, breaker)
    assert client.ping()
    master.stop()  # the Sentinel still names it: connections are refused
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):  # no connection attempted while open
        client.ping()
    master.restart()
    now[0] += 5.0  # the interval passes: one probe goes through and closes it
    assert client.ping()
    assert breaker.state == CLOSED
