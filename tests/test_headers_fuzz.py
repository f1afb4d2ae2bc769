"""Any bytes in any header never raise out of the engine (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaywarden.checks import Stage
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.message import Message, normalise_ip
from relaywarden.policy import policy_from_dict
from relaywarden.verdict import Verdict
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore
from tests.test_forgery_corpus import NOW, POLICY

NAMES = ["From", "Sender", "Reply-To", "Received", "Date", "Message-ID", "Subject", "To", "Cc"]
# Bytes that stress the parsers: encoded words, folding, address syntax, 8-bit.
PIECES = [
    b"=?",
    b"?=",
    b"utf-8?q?",
    b"?b?",
    b"\r\n ",
    b"\n",
    b"\x00",
    b"<",
    b">",
    b"@",
    b'"',
    b",",
    b"(",
    b")",
    b"[",
    b"]",
    b"\xff",
    b"\xc3",
    b"paypal.com",
    b"relay.example.net",
    b"192.0.2.10",
    b"0.0.0.1",
    b";",
    b":",
    b"\\",
]
VALUES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=8)), max_size=40).map(b"".join),
)
HEADERS = st.lists(
    st.tuples(st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=20)), VALUES),
    max_size=12,
)
POL = policy_from_dict(POLICY)
RESOLVER = ZoneResolver()


def run(headers: list[tuple[str, bytes]], mail_from: str) -> list[Verdict]:
    msg = Message(client_address=normalise_ip("203.0.113.7"), mail_from=mail_from)
    for name, value in headers:
        msg.add_header(name, value)
    sender = identify(msg, Inventory(POL.customers))
    session = RESOLVER.session()
    return [
        decide(msg, sender, POL, FakeStore(), session, stage=stage, now=NOW)
        for stage in (Stage.MAIL, Stage.EOM)
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=HEADERS, mail_from=st.one_of(st.just("orders@shop.example"), st.text(max_size=60)))
def test_any_header_bytes_give_a_verdict(headers: list[tuple[str, bytes]], mail_from: str) -> None:
    for verdict in run(headers, mail_from):
        assert verdict.reply is None or verdict.reply.line().isascii()
        for finding in verdict.findings:
            assert finding.score >= 0
