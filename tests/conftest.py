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
import redis

from relaywarden.devstack.milter import MilterProcess
from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.redis import RedisServer
from relaywarden.devstack.sink import Sink
from relaywarden.devstack.stack import Stack
from relaywarden.limits import escalation
from relaywarden.store import RedisStore
from tests.e2e_support import Receiver

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
    server = RedisServer()
    url = server.start(tmp_path)
    try:
        yield RedisStore(redis.Redis.from_url(url), "rwtest")
    finally:
        server.stop()


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
