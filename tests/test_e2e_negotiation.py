"""Through real Postfix: when no check reads the body, Postfix sends none and the
message still flows; over a unix socket Postfix sends no DATA at all, and the
headers, the body and the end of message still arrive and decide."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from relaywarden.devstack.procs import free_port
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


def test_over_a_unix_socket_without_data_the_message_is_still_seen_whole(
    private_stack,
) -> None:  # type: ignore[no-untyped-def]
    sock = Path("/tmp") / f"rw-e2e-{os.getpid()}-{free_port()}" / "milter.sock"
    policy = '[milter]\nsocket_group = "postfix"\n'
    try:
        stack: Stack = private_stack(policy, milter_socket=sock)
        body = b"Hello,\r\n" + b"your order left our warehouse.\r\n" * 100
        sent = stack.send("orders@shop.example", ["buyer@example.org"], message(body=body))
        assert stack.fate(sent).fate == "delivered"
        assert sent.queue_id and logged_body_size(stack, sent.queue_id) > 3000
        # A verdict only the headers can give still comes at the end of the message.
        huge = b"From: " + b", ".join([b"<someone@shop.example>"] * 400)
        refused = stack.send(
            "orders@shop.example", ["buyer@example.org"], message(from_header=huge)
        )
        outcome = stack.fate(refused)
        assert outcome.fate == "rejected" and "header too long" in outcome.reply, outcome.reply
    finally:
        shutil.rmtree(sock.parent, ignore_errors=True)
