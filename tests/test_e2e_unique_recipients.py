"""A unique-recipient limit counts distinct recipients, end to end: real Postfix
(XCLIENT plays the VPS), real redis-server and Redis time, the milter as a
process, the sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relaywarden.devstack.smtpclient import SendResult
from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = pytest.mark.e2e
VPS = "203.0.113.91"
SENDER = "orders@shop.example"
SAME = ["a@example.org", "b@example.org", "c@example.net"]
POLICY = """
[plans.few]
messages = ["1000/1h"]
unique_recipients = ["5/1h"]

[[customers]]
id = "cust-few"
plan = "few"
networks = ["203.0.113.0/24"]
domains = ["shop.example"]

[checks.sender]
enabled = false
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("unique") / "policy.toml"
    policy.write_text(POLICY)
    running = Stack(policy).start()
    yield running
    running.stop()


def send(stack: Stack, rcpts: list[str], n: int = 0) -> SendResult:
    return stack.send(SENDER, rcpts, message(SENDER, f"note {n}"), client=VPS)


def codes(result: SendResult) -> list[int]:
    return [result.per_rcpt[r][0] for r in result.per_rcpt]


def test_twenty_messages_to_three_then_the_sixth_distinct_is_refused(stack: Stack) -> None:
    results = [send(stack, SAME, n) for n in range(20)]
    assert [codes(r) for r in results] == [[250, 250, 250]] * 20
    assert all(r.accepted for r in results)
    assert stack.fate(results[-1]).fate == "delivered"
    assert codes(send(stack, ["d@example.org"])) == [250]
    assert codes(send(stack, ["e@example.org"])) == [250]
    refused = send(stack, ["f@example.org"])
    assert not refused.accepted and (refused.code, refused.enhanced) == (451, "4.7.1")
    # A counted recipient still goes, beside the refused new one.
    mixed = send(stack, ["f@example.org", "a@example.org"])
    assert codes(mixed) == [451, 250]
    assert stack.fate(mixed).fate == "delivered"
