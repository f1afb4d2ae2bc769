"""Sender ownership and DKIM-aware DMARC end to end: client → real Postfix →
RelayWarden (body kept for DKIM through the adapter) → sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relaywarden.devstack.stack import Stack
from tests.conftest import TESTS
from tests.test_honest_senders import build, signed
from tests.test_sender_ownership import ZONES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RCPT = ["buyer@example.org"]
EXTRA_ZONES = "\n".join(
    line for line in ZONES.splitlines() if "strict.example" in line
)  # strict.example: p=reject, SPF elsewhere, the test DKIM key


@pytest.fixture(scope="module")
def sstack() -> Iterator[Stack]:
    with Stack(TESTS / "policies" / "sender.toml", dns_zones=EXTRA_ZONES) as running:
        yield running


def test_a_customer_dkim_signing_its_own_p_reject_domain_is_delivered(sstack: Stack) -> None:
    data = signed("strict.example", "strict.example", body=b"hello\r\n" * 2000)
    outcome = sstack.fate(sstack.send("news@strict.example", RCPT, data))
    assert outcome.fate == "delivered", outcome.reply


def test_the_same_message_with_its_body_changed_is_refused(sstack: Stack) -> None:
    data = signed("strict.example", "strict.example").replace(b"hello", b"HELLO")
    outcome = sstack.fate(sstack.send("news@strict.example", RCPT, data))
    assert outcome.fate == "rejected", outcome.reply
    assert (outcome.result.code, outcome.result.enhanced) == (550, "5.7.1")


def test_another_customers_domain_is_refused_with_advice(sstack: Stack) -> None:
    data = build("billing@bakery.example", "billing@bakery.example")
    outcome = sstack.fate(sstack.send("billing@bakery.example", RCPT, data))
    assert outcome.fate == "rejected", outcome.reply
    assert (outcome.result.code, outcome.result.enhanced) == (550, "5.7.1")
    assert "bakery.example belongs to another customer of this relay" in outcome.result.text


def test_the_owner_sends_as_its_own_domain(sstack: Stack) -> None:
    data = build("billing@bakery.example", "billing@bakery.example")
    result = sstack.send("billing@bakery.example", RCPT, data, client="198.51.100.9")
    assert sstack.fate(result).fate == "delivered", result
