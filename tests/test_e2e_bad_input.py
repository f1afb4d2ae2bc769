"""Hostile and odd input through real Postfix: every message gets a decision,
the milter stays up and its memory stays bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RCPT = ["buyer@example.org"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def decided(stack: Stack, queue_id: str | None) -> dict:  # type: ignore[type-arg]
    assert stack.milter is not None and queue_id
    for line in stack.milter.log_text().splitlines():
        if line.startswith("{") and queue_id in line:
            record = json.loads(line)
            if record.get("queue_id") == queue_id:
                return record  # type: ignore[no-any-return]
    raise AssertionError(f"no decision logged for {queue_id}")


CASES = {
    "8bit and invalid UTF-8 headers": message(
        extra_headers=[
            b"X-Latin1: caf\xe9",
            b"X-Broken: \xff\xfe\x80 bytes",
            b"Comments: \xc3\x28",
        ],
        subject="=?utf-8?q?Caf=C3=A9_=E2=82=AC?= \xe9",
    ),
    "100 KB header": message(extra_headers=[b"X-Long: " + b"a" * 100_000]),
    "folded 100 KB header": message(
        extra_headers=[b"X-Folded: " + b"\r\n ".join([b"b" * 70] * 1400)]
    ),
    "5,000 headers": message(extra_headers=[b"X-Filler-%d: value" % i for i in range(5000)]),
    "NUL bytes in body": message(body=b"before\x00after\r\n\x00\x00\r\n"),
    "bad encoded words": message(subject="=?utf-8?b?!!!notbase64?= =?x-unknown?q?abc?= =?utf-8?q?"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_odd_message_gets_a_decision(stack: Stack, name: str) -> None:
    result = stack.send("orders@shop.example", RCPT, CASES[name])
    outcome = stack.fate(result)
    assert outcome.fate == "delivered", outcome.reply
    line = decided(stack, result.queue_id)
    assert line["action"] == "accept"
    if name == "5,000 headers":
        assert line["header_count"] >= 5000  # the milter saw every one of them


def test_null_sender_idn_and_quoted_local_parts(stack: Stack) -> None:
    for sender, from_header in [
        ("", b"From: MAILER-DAEMON <mailer-daemon@shop.example>"),
        ('"john doe"@shop.example', b'From: "john doe"@shop.example'),
        ("info@xn--caf-dma.example", b"From: info@xn--caf-dma.example"),
        ("info@caf\u00e9.example", "From: info@caf\u00e9.example".encode()),
        ("j\u00f6rg@caf\u00e9.example", "From: J\u00f6rg <j\u00f6rg@caf\u00e9.example>".encode()),
    ]:
        result = stack.send(sender, RCPT, message(from_header=from_header))
        assert stack.fate(result).fate == "delivered", (sender, result)
        line = decided(stack, result.queue_id)
        assert line["sender"] == sender


def test_20mb_body_keeps_milter_memory_bounded(stack: Stack) -> None:
    assert stack.milter is not None and stack.milter.proc is not None
    pid = stack.milter.proc.pid
    before = rss_kib(pid)
    body = (b"x" * 998 + b"\r\n") * (20 * 1024 * 1024 // 1000)
    result = stack.send("orders@shop.example", RCPT, message(body=body), timeout=120)
    assert stack.fate(result, timeout=120).fate == "delivered"
    line = decided(stack, result.queue_id)
    assert line["action"] == "accept"
    assert line["body_size"] >= 20 * 1000 * 1000
    grown = rss_kib(pid) - before
    # The body is streamed into a digest, never held: 20 MB through it must not
    # grow the process by anything like 20 MB.
    assert grown < 8 * 1024, f"milter RSS grew by {grown} KiB for a 20 MB body"
    assert stack.milter.running()
