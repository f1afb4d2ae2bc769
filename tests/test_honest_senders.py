"""Honest customers whose From is not theirs, and DKIM-aware DMARC.

Under the default policy a forward, a contact form, a mailing list and a
resent message are delivered (findings logged) when the From domain publishes
p=none or no DMARC at all, and stay a spoof under p=reject/p=quarantine. A
valid DKIM signature aligned with the From domain is not a spoof.
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim
import pytest

from relaywarden.checks import Stage
from relaywarden.dkimverify import BODY_NOTE, BodySpool
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.message import Message, message_from_bytes
from relaywarden.policy import Policy
from relaywarden.verdict import Action, Verdict
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore
from tests.test_sender_ownership import KEYS, ZONES, policy_with

NOW = 1_795_900_000.0


@dataclass(frozen=True)
class Honest:
    mail_from: str
    headers: str  # besides From, To, Subject, Date, Message-ID


CASES = {
    "forward": Honest("fwd+alice=example.org@shop.example", ""),
    "contact-form": Honest("www@shop.example", "Reply-To: {frm}\r\n"),
    "mailing-list": Honest(
        "list-bounces@shop.example",
        "Sender: list@shop.example\r\nList-Id: Friends <friends.list.shop.example>\r\n",
    ),
    "resent": Honest("orders@shop.example", "Resent-From: orders@shop.example\r\n"),
}
# From domain → (its DMARC, the action every honest case gets)
FROM_DOMAINS = {
    "lenient.example": ("p=none", Action.ACCEPT),
    "example.org": ("none published", Action.ACCEPT),
    "paypal.com": ("p=reject", Action.REJECT),
    "held.example": ("p=quarantine", Action.REJECT),
}


def build(frm: str, mail_from: str, extra: str = "", body: bytes = b"hello\r\n") -> bytes:
    return (
        f"From: Someone <{frm}>\r\nTo: b@example.org\r\nSubject: honest\r\n"
        f"Date: Sat, 28 Nov 2026 09:12:00 +0000\r\nMessage-ID: <h@shop.example>\r\n{extra}\r\n"
    ).encode() + body


def decide_bytes(data: bytes, mail_from: str, policy: Policy | None = None) -> Verdict:
    policy = policy or policy_with()
    msg = message_from_bytes(data, mail_from=mail_from, client_address="203.0.113.7")
    keep_body(msg, data.split(b"\r\n\r\n", 1)[1])
    sender = identify(msg, Inventory(policy.customers))
    session, store = ZoneResolver(ZONES).session(), FakeStore()
    verdict = decide(msg, sender, policy, store, session, stage=Stage.MAIL, now=NOW)
    if verdict.action in (Action.ACCEPT, Action.QUARANTINE):
        verdict = decide(msg, sender, policy, store, session, stage=Stage.EOM, now=NOW)
    return verdict


def keep_body(msg: Message, body: bytes) -> None:
    """What the adapter does when a DKIM-Signature header is present."""
    if msg.header_fields("DKIM-Signature"):
        spool = BodySpool(10 * 1024 * 1024)
        spool.write(body)
        msg.notes[BODY_NOTE] = spool


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("domain", sorted(FROM_DOMAINS))
def test_honest_sender_table(case: str, domain: str) -> None:
    honest = CASES[case]
    frm = f"someone@{domain}"
    verdict = decide_bytes(
        build(frm, honest.mail_from, honest.headers.format(frm=frm)), honest.mail_from
    )
    dmarc, expected = FROM_DOMAINS[domain]
    names = {f.name for f in verdict.findings}
    assert verdict.action == expected, (case, domain, dmarc, sorted(names), verdict.score)
    assert ("dmarc-spoof" in names) == (expected == Action.REJECT)
    if expected == Action.ACCEPT:
        assert "foreign-domain" in names  # delivered, with its findings logged


# -- DKIM ------------------------------------------------------------------------
def signed(frm_domain: str, d: str, body: bytes = b"hello\r\n") -> bytes:
    data = build(f"news@{frm_domain}", f"news@{frm_domain}", body=body)
    key = (KEYS / "dkim-test.pem").read_bytes()
    sig = dkim.sign(data, b"sel", d.encode(), key, include_headers=[b"from", b"subject"])
    return sig.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + data


def test_a_customer_signing_its_own_p_reject_domain_is_not_a_spoof() -> None:
    verdict = decide_bytes(signed("strict.example", "strict.example"), "news@strict.example")
    names = {f.name for f in verdict.findings}
    assert "dmarc-spoof" not in names and verdict.action == Action.ACCEPT, sorted(names)


def test_a_parent_domain_signature_aligns_relaxed() -> None:
    verdict = decide_bytes(
        signed("mail.strict.example", "strict.example"), "news@mail.strict.example"
    )
    assert "dmarc-spoof" not in {f.name for f in verdict.findings}


def test_the_same_message_unsigned_is_a_spoof() -> None:
    data = build("news@strict.example", "news@strict.example")
    verdict = decide_bytes(data, "news@strict.example")
    assert verdict.action == Action.REJECT
    assert "dmarc-spoof" in {f.name for f in verdict.findings}


def test_a_body_changed_after_signing_is_a_spoof() -> None:
    data = signed("strict.example", "strict.example").replace(b"hello", b"HELLO")
    verdict = decide_bytes(data, "news@strict.example")
    assert verdict.action == Action.REJECT


def test_a_valid_signature_of_another_domain_does_not_align() -> None:
    verdict = decide_bytes(signed("strict.example", "evil.example"), "news@strict.example")
    assert verdict.action == Action.REJECT


def test_a_body_over_the_cap_gets_no_dkim_pass() -> None:
    data = signed("strict.example", "strict.example", body=b"x" * 2000 + b"\r\n")
    policy = policy_with()
    msg = message_from_bytes(data, mail_from="news@strict.example", client_address="203.0.113.7")
    spool = BodySpool(1000)
    spool.write(data.split(b"\r\n\r\n", 1)[1])
    msg.notes[BODY_NOTE] = spool
    sender = identify(msg, Inventory(policy.customers))
    verdict = decide(
        msg, sender, policy, FakeStore(), ZoneResolver(ZONES).session(), stage=Stage.EOM, now=NOW
    )
    assert spool.overflowed and verdict.action == Action.REJECT
