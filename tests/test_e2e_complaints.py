"""Complaints end to end: messages through real Postfix and the milter (stamped
with the trace token), ARF reports built from what the sink received, sent to
`relaywarden complaints listen` over SMTP; attributed to the right customer,
whose next message is then held per policy while a neighbour's is not."""

from __future__ import annotations

import json
import os
import smtplib
import sys
from collections.abc import Iterator

import pytest

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, poll_until, wait_for_port
from relaywarden.devstack.stack import Stack
from tests.complaints_support import arf, forward
from tests.e2e_support import Receiver, cli
from tests.mail import message

pytestmark = pytest.mark.e2e

POLICY = """
[redis]
on_error = "tempfail"

[plans.default]
messages = ["100000/1m"]

[[trace.keys]]
id = "k1"
secret = "f3Jq9xW2mP8vL5tR7yU1iO4pA6sD0gHk"

[[customers]]
id = "cust-spammy"
networks = ["203.0.113.60/32"]
domains = ["shop.example"]

[[customers]]
id = "cust-cafe"
networks = ["198.51.100.9/32"]
domains = ["cafe.example"]

[complaints]
enabled = true
listen = "127.0.0.1:{port}"

[complaints.threshold]
share = 0.01
min_count = 3
action = "quarantine"
warn_share = 0.01
warn_min_count = 2

[outcomes.webhook]
url = "{webhook}"
attempts = 3
backoff = "100ms"
"""


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[tuple[Stack, int]]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("complaints")
    policy = tmp / "policy.toml"
    policy.write_text(POLICY.replace("{port}", str(port)).replace("{webhook}", receiver.url))
    stack = Stack(policy).start()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [sys.executable, "-m", "relaywarden", "complaints", "listen"]
    argv += ["--config", str(policy), "--redis-url", stack.redis_url]
    listener = Proc(argv, "complaints", tmp / "complaints.log", env=env, cwd=PROJECT_ROOT)
    try:
        wait_for_port(LOOPBACK, port, 20, "complaints listener")
        yield stack, port
    finally:
        listener.stop(10)
        stack.stop()


def listed(stack: Stack, *extra: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(
        cli(stack, "complaints", "list", "--json", *extra)
    )
    return entries


def report(port: int, raw: bytes) -> None:
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP's line ending
    with smtplib.SMTP(LOOPBACK, port, timeout=10) as smtp:
        smtp.sendmail("fbl@mailbox.example", ["fbl@relay.example.net"], crlf)


def test_complaints_are_attributed_and_the_next_message_held(
    world: tuple[Stack, int], receiver: Receiver
) -> None:
    stack, port = world
    spammy, cafe = "203.0.113.60", "198.51.100.9"
    for n in range(3):
        result = stack.send(
            "deals@shop.example",
            [f"victim{n}@example.org"],
            message("deals@shop.example", f"Cheap watches {n}", to=f"victim{n}@example.org"),
            client=spammy,
        )
        assert result.code == 250
    assert (
        stack.send(
            "news@cafe.example", ["guest@example.org"], message("news@cafe.example"), client=cafe
        ).code
        == 250
    )
    poll_until(
        lambda: len([m for m in stack.sink.messages if (m.subject or "").startswith("Cheap")]) == 3,
        30,
        "3 messages at the sink",
    )
    received = [m for m in stack.sink.messages if (m.subject or "").startswith("Cheap")]
    assert all(m.header("X-RelayWarden-Trace") for m in received)

    # Two ARF reports and one inline forward, built from what the sink received,
    # plus one report with no token and one that is not a report at all.
    report(port, arf(received[0].raw))
    report(port, arf(received[1].raw, feedback_type="fraud"))
    report(port, forward(received[2].raw))
    report(port, b"Subject: you sent me spam\r\n\r\nI do not know from whom.\r\n")
    report(
        port, b"\xff\xfe garbage \x00\r\n\r\n--\r\nContent-Type: multipart/report; boundary=\r\n"
    )

    entries = listed(stack)
    assert len(entries) == 5
    mine = listed(stack, "--subject", "customer:cust-spammy")
    assert len(mine) == 3
    assert {e["subjects"][0] for e in mine} == {f"vps:{spammy}"}  # type: ignore[index]
    kinds = sorted(str(e["feedback"].get("Feedback-Type", e["kind"])) for e in mine)  # type: ignore[attr-defined]
    assert kinds == ["abuse", "forward", "fraud"]
    unattributed = [e for e in entries if not e["attributed"]]
    assert len(unattributed) == 2 and all(e["problems"] for e in unattributed)

    # The warning line (2 complaints) sent the abuse team one notice per subject.
    poll_until(
        lambda: any(n.get("subject") == "customer:cust-spammy" for n in receiver.notices),
        10,
        "the complaints warning",
    )
    warned = [n for n in receiver.notices if n.get("kind") == "complaints"]
    assert {n["subject"] for n in warned} == {f"vps:{spammy}", "customer:cust-spammy"}
    assert all(n["count"] == 2 for n in warned)  # sent once, at the crossing
    # The customer's next message is held (quarantine) at MAIL FROM's finding...
    nxt = stack.send(
        "deals@shop.example", ["x@example.org"], message("deals@shop.example"), client=spammy
    )
    assert stack.fate(nxt).fate == "held"
    # ...the neighbour's is delivered.
    ok = stack.send(
        "news@cafe.example", ["g2@example.org"], message("news@cafe.example"), client=cafe
    )
    assert stack.fate(ok).fate == "delivered"
    # And the listener is still up after the garbage.
    report(port, arf(received[0].raw))
