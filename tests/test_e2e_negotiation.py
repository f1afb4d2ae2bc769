"""Through real Postfix: when no check reads the body, Postfix sends none and the
message still flows; over a unix socket DATA goes unanswered and mail flows."""

from __future__ import annotations

import json

import pytest

from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NO_BODY_READER = "[content]\nenabled = false\n[checks.sender]\nenabled = false\n"


def logged_body_size(stack: Stack, queue_id: str) -> int:
    assert stack.milter is not None
    for line in stack.milter.log_text().splitlines():
        if line.startswith("{") and queue_id in line:
            record = json.loads(line)
            if record.get("queue_id") == queue_id and record.get("stage") == "eom":
                return int(record["body_size"])
    raise AssertionError(f"no end-of-message decision for {queue_id}")


@pytest.mark.parametrize(("policy", "body_seen"), [(NO_BODY_READER, False), ("", True)])
def test_the_body_travels_only_when_a_check_reads_it(
    private_stack, policy: str, body_seen: bool
) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = private_stack(policy)
    body = b"Hello,\r\n" + b"your order left our warehouse.\r\n" * 100
    result = stack.send("orders@shop.example", ["buyer@example.org"], message(body=body))
    assert stack.fate(result).fate == "delivered"
    assert result.queue_id
    size = logged_body_size(stack, result.queue_id)
    assert (size > 3000) if body_seen else (size == 0)
    delivered = [
        m for m in stack.sink.messages if result.queue_id in " ".join(m.headers("Received"))
    ]
    assert delivered and b"warehouse" in delivered[0].raw  # the mail itself is whole
