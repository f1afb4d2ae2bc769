"""Forged headers and spoofed senders end to end: client → real Postfix →
RelayWarden (resolving through the real test DNS server) → sink."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from relaywarden.devstack.stack import Stack
from tests.conftest import TESTS
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RCPT = ["buyer@example.org"]
CUSTOMER = "203.0.113.7"  # in the shop customer's network (tests/policies/forgery.toml)


@pytest.fixture(scope="module")
def fstack() -> Iterator[Stack]:
    with Stack(TESTS / "policies" / "forgery.toml") as running:
        yield running


def decision(stack: Stack, key: str, value: str) -> dict[str, Any]:
    assert stack.milter is not None
    for line in stack.milter.log_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "decision" and record.get(key) == value:
                return record  # type: ignore[no-any-return]
    raise AssertionError(f"no decision logged with {key}={value}")


def finding(record: dict[str, Any], name: str) -> dict[str, Any]:
    found = [f for f in record["findings"] if f["name"] == name]
    assert found, [f["name"] for f in record["findings"]]
    return found[0]  # type: ignore[no-any-return]


def ref_of(reply_text: str) -> str:
    return reply_text.rsplit("(ref ", 1)[1].rstrip(")")


def test_customer_spoofing_a_dmarc_reject_brand_is_refused(fstack: Stack) -> None:
    data = message("service@paypal.com", "Your account is limited")
    outcome = fstack.fate(fstack.send("service@paypal.com", RCPT, data))
    assert outcome.fate == "rejected"
    assert (outcome.result.code, outcome.result.enhanced) == (550, "5.7.1")
    assert "send as a domain of your own" in outcome.result.text
    record = decision(fstack, "ref", ref_of(outcome.result.text))
    spoof = finding(record, "dmarc-spoof")
    assert spoof["evidence"]["dmarc_policy"] == "reject"
    assert spoof["evidence"]["spf"] == {"192.0.2.10": "fail"}
    finding(record, "foreign-domain")
    assert not [m for m in fstack.sink.messages if m.subject == "Your account is limited"]


def test_same_customer_sending_as_its_own_domain_is_delivered(fstack: Stack) -> None:
    data = message("orders@shop.example", "own domain e2e")
    outcome = fstack.fate(fstack.send("orders@shop.example", RCPT, data))
    assert outcome.fate == "delivered", outcome.reply
    record = decision(fstack, "queue_id", outcome.result.queue_id or "")
    assert record["findings"] == []


def test_forged_received_claiming_the_relay_is_flagged(fstack: Stack) -> None:
    forged = (
        b"Received: from relay.example.net (relay.example.net [192.0.2.10])\r\n"
        b"\tby mx.example.org with ESMTPS id 99AA; Sat, 28 Nov 2026 09:11:00 +0000"
    )
    data = message(subject="forged trace e2e", extra_headers=[forged])
    outcome = fstack.fate(fstack.send("orders@shop.example", RCPT, data))
    assert outcome.fate == "held"
    record = decision(fstack, "queue_id", outcome.result.queue_id or "")
    assert record["action"] == "quarantine"
    claims = finding(record, "forged-received")["evidence"]["claims"]
    assert "relay.example.net" in claims and "192.0.2.10" in claims


def test_display_name_spoof_is_flagged(fstack: Stack) -> None:
    spoof = b'From: "orders@amazon.example" <billing@shop.example>'
    data = message("billing@shop.example", "display name e2e", from_header=spoof)
    outcome = fstack.fate(fstack.send("billing@shop.example", RCPT, data))
    assert outcome.fate == "held"
    record = decision(fstack, "queue_id", outcome.result.queue_id or "")
    evidence = finding(record, "display-name-address")["evidence"]
    assert evidence["display"] == "orders@amazon.example"


def test_dns_timeout_tempfails_451_443(fstack: Stack) -> None:
    data = message("someone@slow.example", "slow dns e2e")
    outcome = fstack.fate(fstack.send("someone@slow.example", RCPT, data))
    assert outcome.fate == "tempfailed"
    assert (outcome.result.code, outcome.result.enhanced) == (451, "4.4.3")
    record = decision(fstack, "ref", ref_of(outcome.result.text))
    assert finding(record, "dns-unavailable")["evidence"] == {"error": "DnsError"}
    assert fstack.milter is not None and fstack.milter.running()


def test_nonexistent_sender_domain_is_rejected_518(fstack: Stack) -> None:
    data = message("ghost@nxdomain.example", "ghost e2e")
    outcome = fstack.fate(fstack.send("ghost@nxdomain.example", RCPT, data))
    assert outcome.fate == "rejected"
    assert outcome.result.stage == "mail"
    assert (outcome.result.code, outcome.result.enhanced) == (550, "5.1.8")
