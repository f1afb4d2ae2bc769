"""Hostile From headers at engine level: each must get the findings listed,
whatever it hides in encoded words, comments, quotes, groups or brackets.

The From is parsed once, from the raw header, RFC 5322 first; encoded words are
decoded in display names afterwards. An ambiguous From is a finding of its own
and every other check still sees each address the header could mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from relaywarden.checks import Stage
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import Policy, policy_from_dict
from relaywarden.verdict import Action, Verdict
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore

POLICY = {
    "relay": {
        "hostnames": ["relay.example.net"],
        "networks": ["192.0.2.0/28"],
        "outbound_ips": ["192.0.2.10"],
    },
    "brands": {"protected": ["paypal.com"]},
    "plans": {"small": {"messages": ["100000/1m"]}},
    "customers": [
        {
            "id": "shop",
            "plan": "small",
            "networks": ["203.0.113.0/24"],
            "domains": ["shop.example", "cafe.example"],
        }
    ],
}

SPOOF = "sender.dmarc-spoof"
AMBIGUOUS = "addresses.invalid-from-header"
IN_NAME = "headers.display-name-address"
BRAND = "headers.display-name-brand"


@dataclass
class Case:
    from_value: bytes
    must: list[str]
    action: Action
    must_not: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    # The report: a decoded comma made the parse "ambiguous" and every
    # check skipped the header.
    "encoded-comma-q": Case(
        b"=?utf-8?q?PayPal=2C_Inc=2E?= <service@paypal.com>", [SPOOF], Action.REJECT, [AMBIGUOUS]
    ),
    "encoded-comma-b": Case(
        b"=?utf-8?b?UGF5UGFsLCBJbmMu?= <service@paypal.com>", [SPOOF], Action.REJECT, [AMBIGUOUS]
    ),
    "encoded-comma-in-quotes": Case(
        b'"=?utf-8?q?PayPal=2C_Inc?=" <service@paypal.com>', [SPOOF], Action.REJECT, [AMBIGUOUS]
    ),
    "encoded-quotes": Case(
        b"=?utf-8?q?=22PayPal=22_=3Cbilling=3E?= <service@paypal.com>",
        [SPOOF],
        Action.REJECT,
        [AMBIGUOUS],
    ),
    "encoded-at-in-name": Case(
        b"=?utf-8?q?service=40paypal=2Ecom?= <x@evil.example>",
        [IN_NAME, BRAND],
        Action.REJECT,
        [AMBIGUOUS],
    ),
    "encoded-angle-address-in-name": Case(
        b"=?utf-8?q?=3Cservice=40paypal=2Ecom=3E?= <x@evil.example>",
        [IN_NAME, BRAND],
        Action.REJECT,
        [AMBIGUOUS],
    ),
    "mixed-charsets": Case(
        b"=?iso-8859-1?q?PayPal?= =?utf-8?b?LCBJbmMu?= <service@paypal.com>",
        [SPOOF],
        Action.REJECT,
        [AMBIGUOUS],
    ),
    "comment-after": Case(b"service@paypal.com (PayPal)", [SPOOF], Action.REJECT, [AMBIGUOUS]),
    "comment-with-address-and-commas": Case(
        b'"Billing" <service@paypal.com> (a, b, <c@shop.example>)',
        [SPOOF],
        Action.REJECT,
        [AMBIGUOUS],
    ),
    "comment-before-and-nested": Case(
        b"(x (y <orders@shop.example>) z) service@paypal.com", [SPOOF], Action.REJECT, [AMBIGUOUS]
    ),
    "group-syntax": Case(b"PayPal: service@paypal.com;", [SPOOF], Action.REJECT, [AMBIGUOUS]),
    "empty-group": Case(b"undisclosed-senders:;", [AMBIGUOUS], Action.REJECT, [SPOOF]),
    "nested-angle-brackets": Case(b"<<service@paypal.com>>", [AMBIGUOUS], Action.REJECT),
    "two-angle-addresses": Case(
        b"PayPal <orders@shop.example> <service@paypal.com>", [AMBIGUOUS], Action.REJECT
    ),
    "raw-comma-unquoted": Case(b"PayPal, Inc. <service@paypal.com>", [AMBIGUOUS], Action.REJECT),
    "raw-comma-inside-encoded-word": Case(
        b"=?utf-8?q?a,b?= <service@paypal.com>", [AMBIGUOUS], Action.REJECT
    ),
    "obsolete-route": Case(b"<@shop.example:service@paypal.com>", [AMBIGUOUS], Action.REJECT),
    "unterminated-quote": Case(b'"PayPal <service@paypal.com>', [AMBIGUOUS], Action.REJECT),
    "escaped-quote-hiding-an-address": Case(
        b'"PayPal \\" <x@evil.example>" <service@paypal.com>', [SPOOF, IN_NAME], Action.REJECT
    ),
    "upper-case-domain": Case(b"PayPal <service@PAYPAL.COM>", [SPOOF], Action.REJECT),
    "encoded-word-as-local-part": Case(b"=?utf-8?q?service?=@paypal.com", [SPOOF], Action.REJECT),
    # Homographs: the Cyrillic "a" in UTF-8 and the same domain in punycode.
    "idn-homograph-utf8": Case(
        "PayPal <service@p\u0430ypal.com>".encode(), [BRAND], Action.QUARANTINE, [SPOOF]
    ),
    "idn-homograph-punycode": Case(
        b"PayPal <service@xn--pypal-4ve.com>", [BRAND], Action.QUARANTINE, [SPOOF]
    ),
    # Honest headers stay clean.
    "plain-own-domain": Case(b"Shop Orders <orders@shop.example>", [], Action.ACCEPT),
    "encoded-own-name": Case(
        b"=?utf-8?q?Caf=C3=A9_Orders=2C_Paris?= <orders@shop.example>", [], Action.ACCEPT
    ),
}


def run(from_value: bytes, policy: Policy | None = None) -> tuple[Verdict, set[str]]:
    policy = policy or policy_from_dict(POLICY)
    data = (
        b"From: " + from_value + b"\r\nTo: Buyer <buyer@example.org>\r\n"
        b"Subject: hostile from\r\nDate: Sat, 28 Nov 2026 09:12:00 +0000\r\n"
        b"Message-ID: <hf@shop.example>\r\n\r\nbody\r\n"
    )
    msg = message_from_bytes(data, mail_from="orders@shop.example", client_address="203.0.113.7")
    sender = identify(msg, Inventory(policy.customers))
    session, store = ZoneResolver().session(), FakeStore()
    now = 1_795_900_000.0
    verdict = decide(msg, sender, policy, store, session, stage=Stage.MAIL, now=now)
    if verdict.action in (Action.ACCEPT, Action.QUARANTINE):
        verdict = decide(msg, sender, policy, store, session, stage=Stage.EOM, now=now)
    names = {f"{f.check.split('.')[0]}.{f.name}" for f in verdict.findings}
    return verdict, names


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_from(name: str) -> None:
    case = CASES[name]
    verdict, found = run(case.from_value)
    for expected in case.must:
        assert expected in found, (name, sorted(found))
    assert not found & set(case.must_not), (name, sorted(found))
    if not case.must:
        assert not {n for n in found if n != "headers.date-skew"}, (name, sorted(found))
    assert verdict.action == case.action, (name, verdict.action, sorted(found), verdict.score)


def test_the_paypal_encoded_comma_gets_the_dmarc_reply() -> None:
    verdict, _ = run(b"=?utf-8?q?PayPal=2C_Inc=2E?= <service@paypal.com>")
    assert verdict.reply is not None
    assert verdict.reply.line().startswith("550 5.7.1 paypal.com publishes a DMARC policy")


# The engine stops at the first forced reject (the invalid From), so to see that
# ambiguity is never a reason for the sender check to look away, switch the
# addresses check off: every reading of the header is still judged.
AMBIGUOUS_SPOOFS = [n for n, c in CASES.items() if AMBIGUOUS in c.must and n != "empty-group"]


@pytest.mark.parametrize("name", AMBIGUOUS_SPOOFS)
def test_ambiguous_from_still_gets_every_other_check(name: str) -> None:
    policy = policy_from_dict({**POLICY, "checks": {"addresses": {"enabled": False}}})
    verdict, found = run(CASES[name].from_value, policy)
    assert SPOOF in found, (name, sorted(found))
    assert verdict.action == Action.REJECT


def test_an_oversized_from_is_a_finding_without_being_parsed() -> None:
    big = b"PayPal (" + b"x" * 5000 + b") <service@paypal.com>"
    verdict, found = run(big)
    assert "addresses.oversized-address-header" in found
    assert verdict.action == Action.REJECT
    assert verdict.reply is not None and verdict.reply.code == 550


def test_the_address_header_cap_comes_from_the_policy() -> None:
    policy = policy_from_dict({**POLICY, "checks": {"addresses": {"max_header_bytes": 8192}}})
    big = b"Shop (" + b"x" * 5000 + b") <orders@shop.example>"
    verdict, found = run(big, policy)
    assert "addresses.oversized-address-header" not in found
    assert verdict.action == Action.ACCEPT
