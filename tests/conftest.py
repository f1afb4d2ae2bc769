"""Fixtures for the end-to-end suite: real redis-server, Postfix, sink and milter.

Each runs on free loopback ports in a temp dir and is stopped by PID. One shared
stack serves the tests that only need the default test policy; tests that need
their own policy or break a service start a private stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaywarden.devstack.milter import MilterProcess
from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.redis import ClusterServers
from relaywarden.devstack.sink import Sink
from relaywarden.devstack.stack import Stack
from relaywarden.limits import escalation
from relaywarden.store import RedisStore, connect
from tests.e2e_support import Receiver
from tests.redis_backend import (
    CLUSTER,
    DECLARING,
    guard_scripts,
    start_redis,
    unguard_scripts,
)

TESTS = Path(__file__).parent
E2E_POLICY = TESTS / "policies" / "e2e.toml"
FAILPOINT_SENDER = "crash@failpoint.example"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Not pytest's tmp_path: its parents are 0700 and Postfix's own user must
    # traverse into the queue directory. Stack makes (and removes) its own.
    with Stack(
        E2E_POLICY,
        milter_env={"RELAYWARDEN_FAILPOINT_SENDER": FAILPOINT_SENDER},
    ) as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(stack: Stack) -> str:
    return stack.redis_url


@pytest.fixture(scope="session")
def postfix(stack: Stack) -> PostfixInstance:
    assert stack.postfix is not None
    return stack.postfix


@pytest.fixture(scope="session")
def sink(stack: Stack) -> Sink:
    return stack.sink


@pytest.fixture(scope="session")
def milter(stack: Stack) -> MilterProcess:
    assert stack.milter is not None
    return stack.milter


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Start a stack with a policy of the test's own; stopped after the test."""
    started: list[Stack] = []

    def start(policy_text: str, **kw: object) -> Stack:
        policy = tmp_path / f"policy{len(started)}.toml"
        policy.write_text(policy_text)
        stack = Stack(policy, **kw).start()  # type: ignore[arg-type]
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[RedisStore]:
    """A RedisStore on a redis-server of the test's own, stopped after it."""
    url, server = start_redis(tmp_path)
    try:
        yield RedisStore(connect(url, 5.0), "rwtest")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """A real 3-master Redis Cluster (redis-server --cluster-enabled yes, joined by
    redis-cli --cluster create) on free loopback ports, stopped by PID at the end."""
    cluster = ClusterServers()
    cluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def _scripts_declare_their_keys() -> Iterator[None]:
    """On a Cluster run (RELAYWARDEN_TEST_REDIS=cluster) every script call checks
    that each key it touches is in KEYS (tests/redis_backend.py)."""
    saved = guard_scripts(DECLARING) if CLUSTER else {}
    yield
    unguard_scripts(saved)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The abuse team's webhook endpoint, one per test module."""
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def escalate_inline(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Carry escalation jobs out where the milter queues them; the notices they give."""
    notices: list[dict[str, Any]] = []

    def run(job: escalation.Job) -> None:
        notice = escalation.escalate(job)
        if notice is not None:
            notices.append(notice)

    monkeypatch.setattr(escalation.ESCALATOR, "submit", run)
    return notices
