"""A selection of the hostile From corpus (tests/test_hostile_from.py) through
real Postfix: the reply each gets at the client, and that none reaches the sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relaywarden.devstack.stack import Stack
from tests.conftest import TESTS
from tests.test_hostile_from import CASES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RCPT = ["buyer@example.org"]
SELECTION = {
    # name: (reply code, enhanced code, start of the reply text)
    "encoded-comma-q": (550, "5.7.1", "paypal.com publishes a DMARC policy"),
    "mixed-charsets": (550, "5.7.1", "paypal.com publishes a DMARC policy"),
    "encoded-at-in-name": (550, "5.7.1", "Message refused by relay policy"),
    "nested-angle-brackets": (550, "5.1.7", "Invalid sender address"),
    "raw-comma-unquoted": (550, "5.1.7", "Invalid sender address"),
}


@pytest.fixture(scope="module")
def hstack() -> Iterator[Stack]:
    with Stack(TESTS / "policies" / "forgery.toml") as running:
        yield running


def data(from_value: bytes, subject: str) -> bytes:
    return (
        b"From: " + from_value + b"\r\nTo: Buyer <buyer@example.org>\r\n"
        b"Subject: " + subject.encode() + b"\r\nDate: Sat, 28 Nov 2026 09:12:00 +0000\r\n"
        b"Message-ID: <" + subject.encode() + b"@shop.example>\r\n\r\nbody\r\n"
    )


@pytest.mark.parametrize("name", sorted(SELECTION))
def test_hostile_from_through_postfix(hstack: Stack, name: str) -> None:
    code, enhanced, text = SELECTION[name]
    subject = f"hostile-{name}"
    outcome = hstack.fate(
        hstack.send("orders@shop.example", RCPT, data(CASES[name].from_value, subject))
    )
    assert outcome.fate == "rejected", (name, outcome.reply)
    assert (outcome.result.code, outcome.result.enhanced) == (code, enhanced)
    assert text in outcome.result.text, outcome.result.text
    assert not [m for m in hstack.sink.messages if m.subject == subject]


def test_an_oversized_from_is_refused_unparsed_through_postfix(hstack: Stack) -> None:
    big = b"Shop (" + b"x (y) " * 2000 + b") <orders@shop.example>"
    outcome = hstack.fate(hstack.send("orders@shop.example", RCPT, data(big, "hostile-big")))
    assert outcome.fate == "rejected"
    assert (outcome.result.code, outcome.result.enhanced) == (550, "5.6.0")


def test_an_honest_encoded_display_name_is_delivered(hstack: Stack) -> None:
    honest = CASES["encoded-own-name"].from_value
    outcome = hstack.fate(hstack.send("orders@shop.example", RCPT, data(honest, "hostile-honest")))
    assert outcome.fate == "delivered", outcome.reply
