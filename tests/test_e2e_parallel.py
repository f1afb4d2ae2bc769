"""A VPS that opens many SMTP sessions at once, through real Postfix: one relay,
then two relays (two Postfix instances, two `relaywarden run`) sharing one Redis,
then the same two against a real 3-master Redis Cluster (redis+cluster://).

The milters run on the engine's test clock (RELAYWARDEN_TEST_CLOCK), so the
window cannot slide while the test sends: exactly the limit may be delivered,
however the sessions interleave and however long a loaded machine takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from relaywarden.devstack.redis import ClusterServers
from relaywarden.devstack.smtpclient import SendResult, Session
from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = pytest.mark.e2e

LIMIT = 20
SESSIONS, PER_SESSION = 25, 3
POLICY = f"""
[plans.p20]
messages = ["{LIMIT}/1m"]

[[customers]]
id = "cust-20"
plan = "p20"
networks = ["203.0.113.0/24"]
domains = ["shop.example"]
"""
CLOCK = {"RELAYWARDEN_TEST_CLOCK": "1800000000"}


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Stack]]:
    """Two relays, one Redis: the first stack's redis-server serves both."""
    policy = Path(tmp_path_factory.mktemp("parallel")) / "policy.toml"
    policy.write_text(POLICY)
    first = Stack(policy, milter_env=CLOCK).start()
    started = [first]
    try:
        started.append(Stack(policy, redis_url=first.redis_url, milter_env=CLOCK).start())
        yield started
    finally:
        for stack in reversed(started):
            stack.stop()


@pytest.fixture(scope="module")
def cluster_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Stack]]:
    """Two relays whose milters share a real 3-master Redis Cluster."""
    workdir = Path(tmp_path_factory.mktemp("parallel-cluster"))
    policy = workdir / "policy.toml"
    policy.write_text(POLICY)
    cluster = ClusterServers()
    url = cluster.start(workdir / "cluster")
    started: list[Stack] = []
    try:
        for _ in range(2):
            started.append(Stack(policy, redis_url=url, milter_env=CLOCK).start())
        yield started
    finally:
        for stack in reversed(started):
            stack.stop()
        cluster.stop()


def _session(stack: Stack, client: str, n: int) -> list[SendResult]:
    results = []
    with Session(
        "127.0.0.1", stack.smtp_port, xclient={"ADDR": client, "NAME": "[UNAVAILABLE]"}
    ) as session:
        for m in range(PER_SESSION):
            body = message(subject=f"session {n} message {m}")
            results.append(session.send("orders@shop.example", ["buyer@example.org"], body))
    return results


def blast(stacks: list[Stack], client: str) -> list[SendResult]:
    """SESSIONS sessions at once from `client`, spread over the relays in turn."""
    with ThreadPoolExecutor(SESSIONS) as pool:
        futures = [
            pool.submit(_session, stacks[n % len(stacks)], client, n) for n in range(SESSIONS)
        ]
        return [r for f in futures for r in f.result(timeout=300)]


def delivered(stacks: list[Stack], results: list[SendResult]) -> int:
    """Messages that reached the internet (the sinks), once every queue is empty."""
    for stack in stacks:
        assert stack.postfix is not None
        stack.postfix.wait_queue_empty(timeout=120)
    queued = {r.queue_id for r in results if r.accepted}
    return sum(
        1
        for stack in stacks
        for m in stack.sink.messages
        if any(qid and qid in " ".join(m.headers("Received")) for qid in queued)
    )


def _refusals_are_rate_limits(results: list[SendResult]) -> None:
    for r in results:
        if not r.accepted:
            assert (r.stage, r.code) in (("mail", 451), ("mail", 550)), (r.stage, r.code, r.text)
            assert "Rate limit" in r.text or "blocked" in r.text, r.text


def test_parallel_sessions_through_one_relay_deliver_at_most_the_limit(
    relays: list[Stack],
) -> None:
    results = blast(relays[:1], "203.0.113.21")
    assert len(results) == SESSIONS * PER_SESSION
    _refusals_are_rate_limits(results)
    assert sum(r.accepted for r in results) == LIMIT
    assert delivered(relays[:1], results) == LIMIT


def test_parallel_sessions_over_two_relays_deliver_at_most_the_limit_in_total(
    relays: list[Stack],
) -> None:
    results = blast(relays, "203.0.113.22")
    _refusals_are_rate_limits(results)
    assert sum(r.accepted for r in results) == LIMIT
    assert delivered(relays, results) == LIMIT


def test_parallel_sessions_against_a_redis_cluster_deliver_at_most_the_limit(
    cluster_relays: list[Stack],
) -> None:
    one = blast(cluster_relays[:1], "203.0.113.23")  # one relay
    _refusals_are_rate_limits(one)
    assert sum(r.accepted for r in one) == LIMIT
    assert delivered(cluster_relays[:1], one) == LIMIT
    both = blast(cluster_relays, "203.0.113.24")  # two relays, one cluster
    _refusals_are_rate_limits(both)
    assert sum(r.accepted for r in both) == LIMIT
    assert delivered(cluster_relays, both) == LIMIT
