"""Every action, end to end: client → real Postfix → RelayWarden → sink."""

from __future__ import annotations

import json

import pytest

from relaywarden.devstack.stack import Stack
from tests.conftest import FAILPOINT_SENDER
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

RCPT = ["buyer@example.org"]


def decisions(stack: Stack) -> list[dict]:  # type: ignore[type-arg]
    assert stack.milter is not None
    lines = [json.loads(x) for x in stack.milter.log_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "decision"]


def test_clean_message_is_delivered_unchanged(stack: Stack) -> None:
    data = message(subject="clean e2e")
    outcome = stack.fate(stack.send("orders@shop.example", RCPT, data, login="alice"))
    assert outcome.fate == "delivered"
    arrived = [m for m in stack.sink.messages if m.subject == "clean e2e"]
    assert len(arrived) == 1
    assert arrived[0].mail_from == "orders@shop.example"
    assert arrived[0].rcpt_tos == tuple(RCPT)


def test_static_network_block_rejects_at_mail_from(stack: Stack) -> None:
    outcome = stack.fate(stack.send("orders@shop.example", RCPT, message(), client="192.0.2.66"))
    assert outcome.fate == "rejected"
    assert outcome.result.stage == "mail"
    assert outcome.result.code == 550
    assert outcome.result.enhanced == "5.7.1"
    assert "known spam source" in outcome.result.text
    assert "(ref RW-" in outcome.result.text


def test_ipv6_network_block(stack: Stack) -> None:
    blocked = stack.fate(
        stack.send("a@shop.example", RCPT, message("a@shop.example"), client="2001:db8:bad:7::1")
    )
    other = stack.fate(
        stack.send("a@shop.example", RCPT, message("a@shop.example"), client="2001:db8:bae::1")
    )
    assert (blocked.fate, blocked.result.code) == ("rejected", 550)
    assert other.fate == "delivered"


def test_user_block_tempfails_and_nothing_is_delivered(stack: Stack) -> None:
    before = len(stack.sink.messages)
    outcome = stack.fate(
        stack.send("x@shop.example", RCPT, message("x@shop.example"), login="suspended")
    )
    assert outcome.fate == "tempfailed"
    assert (outcome.result.code, outcome.result.enhanced) == (451, "4.7.1")
    assert "account suspended" in outcome.result.text
    assert len(stack.sink.messages) == before


def test_quarantine_puts_message_in_hold_queue(stack: Stack) -> None:
    data = message("promo@shop.example", subject="quarantine e2e")
    result = stack.send("promo@shop.example", RCPT, data)
    outcome = stack.fate(result)
    assert outcome.fate == "held"
    assert stack.postfix is not None
    held = [e for e in stack.postfix.hold_queue() if e["queue_id"] == result.queue_id]
    assert held and held[0]["sender"] == "promo@shop.example"
    assert "milter-hold" in stack.postfix.wait_log(f"{result.queue_id}: milter-hold")
    # Postfix logs only "milter triggers HOLD action"; the reason is in our decision.
    line = next(d for d in decisions(stack) if d["queue_id"] == result.queue_id)
    assert line["action"] == "quarantine"
    assert line["findings"][0]["evidence"]["reason"] == "bulk promotion under review"
    assert not any(m.subject == "quarantine e2e" for m in stack.sink.messages)


def test_discard_answers_250_and_delivers_nothing(stack: Stack) -> None:
    data = message("news@sinkhole.example", subject="discard e2e")
    outcome = stack.fate(stack.send("news@sinkhole.example", RCPT, data))
    assert outcome.result.code == 250
    assert outcome.fate == "discarded"
    assert not any(m.subject == "discard e2e" for m in stack.sink.messages)


@pytest.mark.parametrize("sender", ["orders.@shop.example", "user@localhost", "x@shop_example.com"])
def test_invalid_envelope_sender_is_rejected_517(stack: Stack, sender: str) -> None:
    outcome = stack.fate(stack.send(sender, RCPT, message()))
    assert (outcome.fate, outcome.result.code, outcome.result.enhanced) == (
        "rejected",
        550,
        "5.1.7",
    )
    assert outcome.result.stage == "mail"


def test_invalid_from_header_is_rejected_at_end_of_data(stack: Stack) -> None:
    data = message(from_header=b"From: Shop Orders without an address")
    outcome = stack.fate(stack.send("orders@shop.example", RCPT, data))
    assert (outcome.fate, outcome.result.code, outcome.result.enhanced) == (
        "rejected",
        550,
        "5.1.7",
    )
    assert outcome.result.stage == "data"


def test_engine_exception_gives_451_430_and_milter_survives(stack: Stack) -> None:
    with stack.session(ADDR="203.0.113.9") as session:
        crashed = session.send(FAILPOINT_SENDER, RCPT, message(FAILPOINT_SENDER))
        assert (crashed.code, crashed.enhanced) == (451, "4.3.0")
        assert "Temporary relay problem" in crashed.text
        assert "failpoint" not in crashed.text  # internal error text never reaches the client
        # The same connection, then a new one: both served normally.
        after = session.send("orders@shop.example", RCPT, message(subject="after crash"))
    assert stack.fate(after).fate == "delivered"
    assert stack.fate(stack.send("orders@shop.example", RCPT, message())).fate == "delivered"
    assert stack.milter is not None and stack.milter.running()
    assert "Traceback" in stack.milter.log_text()


def test_every_decision_is_one_json_log_line(stack: Stack) -> None:
    result = stack.send(
        "orders@shop.example",
        ["a@example.org", "b@example.org"],
        message(subject="log line"),
        login="alice",
    )
    assert stack.fate(result).fate == "delivered"
    line = next(d for d in decisions(stack) if d["queue_id"] == result.queue_id)
    assert line["action"] == "accept"
    assert line["client_address"] == "203.0.113.7"
    assert line["sasl_user"] == "alice"
    assert line["sender"] == "orders@shop.example"
    assert line["recipient_count"] == 2
    assert line["latency_ms"] >= 0
    assert line["ref"].startswith("RW-")
    for key in ("time", "score", "findings"):
        assert key in line
