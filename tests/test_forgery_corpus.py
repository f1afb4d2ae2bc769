"""The forged-header and spoofed-sender corpus as a table: each message, the
findings it must produce, those it must not, and the verdict.

Run through the real engine (MAIL FROM, then end of message, as the milter does)
with the real resolver logic over the test DNS zones (tests/fakedns.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relaywarden.checks import Stage
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import Policy, policy_from_dict
from relaywarden.verdict import Action, Verdict
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp()
CUSTOMER_CLIENT = "203.0.113.7"
UNKNOWN_CLIENT = "198.51.100.9"

POLICY = {
    "relay": {
        "hostnames": ["relay.example.net"],
        "networks": ["192.0.2.0/28"],
        "outbound_ips": ["192.0.2.10"],
    },
    "brands": {"protected": ["paypal.com"]},
    "plans": {"small": {"messages": ["100000/1m"]}},  # a customer's plan must exist
    "customers": [
        {
            "id": "shop",
            "plan": "small",
            "networks": ["203.0.113.0/24"],
            "domains": ["shop.example", "cafe.example"],
        },
        {
            "id": "neighbour",
            "plan": "small",
            "networks": ["198.51.100.128/25"],
            "domains": ["example.com"],
        },
    ],
}

HEADER_NAMES = [
    "missing-from",
    "duplicate-header",
    "multiple-from-without-sender",
    "missing-date",
    "bad-date",
    "date-skew",
    "missing-message-id",
    "bad-message-id",
    "forged-received",
    "reserved-received",
    "header-injection",
    "bad-encoded-word",
    "invalid-utf8",
    "display-name-address",
    "display-name-brand",
    "reply-to-elsewhere",
]
SENDER_NAMES = [
    "foreign-domain",
    "org-mismatch",
    "dmarc-spoof",
    "nonexistent-domain",
    "relay-spf-unowned",
    "other-customer-domain",
]
ALL = [f"headers.{n}" for n in HEADER_NAMES] + [f"sender.{n}" for n in SENDER_NAMES]


@dataclass
class Case:
    must: list[str]
    action: Action
    must_not: list[str] = field(default_factory=list)  # empty: every other finding
    mail_from: str | None = None  # None: the From address
    client: str = CUSTOMER_CLIENT
    reply: str = ""  # start of the reply line


TABLE: dict[str, Case] = {
    "clean-customer": Case([], Action.ACCEPT),
    "brand-spoof": Case(
        ["sender.dmarc-spoof", "sender.foreign-domain"],
        Action.REJECT,
        ["headers.display-name-brand", "sender.org-mismatch"],
        reply="550 5.7.1 paypal.com publishes a DMARC policy",
    ),
    "brand-subdomain-spoof": Case(
        ["sender.dmarc-spoof", "sender.foreign-domain", "sender.org-mismatch"],
        Action.REJECT,
        mail_from="orders@shop.example",
        reply="550 5.7.1 mail.paypal.com publishes",
    ),
    "missing-from": Case(["headers.missing-from"], Action.ACCEPT, mail_from="orders@shop.example"),
    "forged-received-relay": Case(["headers.forged-received"], Action.QUARANTINE),
    # The relay's own Received header (this queue id), should the MTA show it: not forged.
    "relay-own-received": Case([], Action.ACCEPT),
    "reserved-received": Case(["headers.reserved-received"], Action.ACCEPT),
    "display-name-spoof": Case(
        ["headers.display-name-address", "headers.display-name-brand"], Action.REJECT
    ),
    "display-name-brand": Case(["headers.display-name-brand"], Action.QUARANTINE),
    "duplicate-headers": Case(["headers.duplicate-header"], Action.ACCEPT),
    "several-from-no-sender": Case(["headers.multiple-from-without-sender"], Action.ACCEPT),
    "several-from-with-sender": Case([], Action.ACCEPT),
    "bad-date-and-id": Case(["headers.bad-date", "headers.bad-message-id"], Action.ACCEPT),
    "date-future": Case(["headers.date-skew"], Action.ACCEPT),
    "missing-date-and-id": Case(
        ["headers.missing-date", "headers.missing-message-id"], Action.ACCEPT
    ),
    "encoded-crlf-injection": Case(["headers.header-injection"], Action.QUARANTINE),
    "bad-encoded-word": Case(["headers.bad-encoded-word"], Action.ACCEPT),
    "invalid-utf8": Case(["headers.invalid-utf8"], Action.ACCEPT),
    "good-encoded-words": Case([], Action.ACCEPT),
    "reply-to-elsewhere": Case(["headers.reply-to-elsewhere"], Action.ACCEPT),
    "reply-to-same-org": Case([], Action.ACCEPT),
    "dmarc-none-foreign": Case(["sender.foreign-domain"], Action.ACCEPT),
    # No customer owns it and its SPF names the relay: receivers would see a pass.
    "relay-spf-unowned": Case(
        ["sender.foreign-domain", "sender.relay-spf-unowned"], Action.QUARANTINE
    ),
    # The neighbour customer's domain: forced, with a reply that says what to do.
    "other-customer-domain": Case(
        ["sender.other-customer-domain"],
        Action.REJECT,
        ["sender.dmarc-spoof"],
        reply="550 5.7.1 example.com belongs to another customer of this relay; send as",
    ),
    "envelope-from-other-org": Case(
        ["sender.org-mismatch"], Action.ACCEPT, mail_from="orders@shop.example"
    ),
    "dns-timeout": Case(["sender.envelope.dns-unavailable"], Action.TEMPFAIL, reply="451 4.4.3"),
    "nonexistent-sender-domain": Case(
        ["sender.nonexistent-domain"], Action.REJECT, reply="550 5.1.8"
    ),
    "ambiguous-from": Case(
        ["addresses.invalid-from-header"],
        Action.REJECT,
        ["headers.display-name-address", "sender.org-mismatch"],
        mail_from="orders@shop.example",
        reply="550 5.1.7",
    ),
}


def run_message(
    name: str, case: Case, policy: Policy, resolver: ZoneResolver
) -> tuple[Verdict, set[str]]:
    msg = message_from_bytes(
        (CORPUS / f"{name}.eml").read_bytes(), mail_from=case.mail_from, client_address=case.client
    )
    sender = identify(msg, Inventory(policy.customers))
    session, store = resolver.session(), FakeStore()
    verdict = decide(msg, sender, policy, store, session, stage=Stage.MAIL, now=NOW)
    if verdict.action in (Action.ACCEPT, Action.QUARANTINE):
        verdict = decide(msg, sender, policy, store, session, stage=Stage.EOM, now=NOW)
    names = {f"{f.check.split('.')[0]}.{f.name}" for f in verdict.findings}
    names |= {f"{f.check}.{f.name}" for f in verdict.findings}
    return verdict, names


def test_every_corpus_file_is_in_the_table() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.eml")) == sorted(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_corpus(name: str) -> None:
    case = TABLE[name]
    verdict, found = run_message(name, case, policy_from_dict(POLICY), ZoneResolver())
    for expected in case.must:
        assert expected in found, (name, sorted(found))
    must_not = case.must_not or [n for n in ALL if n not in case.must]
    assert not found & set(must_not), (name, sorted(found))
    assert verdict.action == case.action, (name, verdict.action, sorted(found), verdict.score)
    if case.reply:
        assert verdict.reply is not None and verdict.reply.line().startswith(case.reply)
    for finding in verdict.findings:
        assert finding.evidence or finding.name in (
            "missing-date",
            "missing-message-id",
            "missing-from",
        )


def test_brand_spoof_from_an_unknown_client_is_still_refused() -> None:
    case = Case(["sender.dmarc-spoof"], Action.REJECT, client=UNKNOWN_CLIENT)
    verdict, found = run_message("brand-spoof", case, policy_from_dict(POLICY), ZoneResolver())
    assert "sender.dmarc-spoof" in found and "sender.foreign-domain" not in found
    assert verdict.action == Action.REJECT


def test_relay_that_dkim_signs_for_the_brand_is_not_spoofing() -> None:
    policy = policy_from_dict(
        {**POLICY, "relay": {**POLICY["relay"], "dkim_domains": ["paypal.com"]}}
    )
    verdict, found = run_message("brand-spoof", Case([], Action.ACCEPT), policy, ZoneResolver())
    assert "sender.dmarc-spoof" not in found
    assert verdict.action != Action.REJECT


def test_weights_and_plan_weights_come_from_the_policy() -> None:
    policy = policy_from_dict(
        {
            **POLICY,
            "checks": {
                "headers": {"weights": {"forged_received": 0.5}},
                "sender": {"foreign_domain_by_plan": {"small": 7.0}},
            },
        }
    )
    _, found = run_message(
        "forged-received-relay", TABLE["forged-received-relay"], policy, ZoneResolver()
    )
    verdict, _ = run_message(
        "forged-received-relay", TABLE["forged-received-relay"], policy, ZoneResolver()
    )
    assert verdict.action == Action.ACCEPT and "headers.forged-received" in found
    verdict, _ = run_message(
        "dmarc-none-foreign", TABLE["dmarc-none-foreign"], policy, ZoneResolver()
    )
    assert verdict.score == 7.0 and verdict.action == Action.QUARANTINE


def test_dns_fail_open_lets_the_message_through() -> None:
    policy = policy_from_dict({**POLICY, "dns": {"on_error": "open"}})
    verdict, found = run_message("dns-timeout", TABLE["dns-timeout"], policy, ZoneResolver())
    assert verdict.action == Action.ACCEPT and "sender.envelope.dns-unavailable" not in found


def test_every_weight_names_a_finding_the_corpus_produces() -> None:
    from relaywarden.policy.forgery import HeaderWeights, SenderWeights

    produced = {name for case in TABLE.values() for name in case.must}
    header_weights = {f"headers.{n.replace('_', '-')}" for n in HeaderWeights.model_fields}
    sender_weights = {f"sender.{n.replace('_', '-')}" for n in SenderWeights.model_fields}
    assert header_weights == {f"headers.{n}" for n in HEADER_NAMES}
    assert header_weights | sender_weights <= produced
