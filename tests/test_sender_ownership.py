"""Ownership across the provider, DMARC discovery per RFC 7489, and DNS failing
open only where it failed. Engine level, with the real resolver logic over zone
text (tests/fakedns.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relaywarden.checks import Stage
from relaywarden.devstack.dns import DEFAULT_ZONES
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.inventory import LiveInventory, base_customers, overrides_key
from relaywarden.message import message_from_bytes
from relaywarden.policy import Policy, policy_from_dict
from relaywarden.store import RedisStore
from relaywarden.verdict import Action, Verdict
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore

ELSEWHERE = "v=spf1 ip4:198.51.100.0/24 -all"
KEYS = Path(__file__).parent / "keys"
# A throwaway 1024-bit key made for these tests only (tests/keys/README).
TEST_DKIM_PUB = (KEYS / "dkim-test.pub.b64").read_text().strip()


def zone(domain: str, dmarc: list[str], spf: str = ELSEWHERE) -> str:
    lines = [
        f"{domain}. 300 IN A 192.0.2.80",
        f"{domain}. 300 IN MX 10 mx.{domain}.",
        f'{domain}. 300 IN TXT "{spf}"',
        *(f'_dmarc.{domain}. 300 IN TXT "{d}"' for d in dmarc),
    ]
    return "\n".join(lines)


ZONES = "\n".join(
    [
        DEFAULT_ZONES,
        zone("firsttag.example", ["p=reject; v=DMARC1"]),
        zone("lowercase-v.example", ["v=dmarc1; p=reject"]),
        zone("tworecords.example", ["v=DMARC1; p=reject", "v=DMARC1; p=none"]),
        zone("spreject.example", ["v=DMARC1; p=none; sp=reject"]),
        "mail.spreject.example. 300 IN A 192.0.2.80",
        zone("spnone.example", ["v=DMARC1; p=reject; sp=none"]),
        "mail.spnone.example. 300 IN A 192.0.2.80",
        zone("pct.example", ["v=DMARC1; p=reject; pct=50"]),
        zone("testing.example", ["v=DMARC1; p=reject; t=y"]),
        zone("badp.example", ["v=DMARC1; p=bogus; rua=mailto:d@badp.example"]),
        zone("strict.example", ["v=DMARC1; p=reject"]),
        "mail.strict.example. 300 IN A 192.0.2.80",
        zone("held.example", ["v=DMARC1; p=quarantine"]),
        f'sel._domainkey.strict.example. 300 IN TXT "v=DKIM1; k=rsa; p={TEST_DKIM_PUB}"',
        f'sel._domainkey.mail.strict.example. 300 IN TXT "v=DKIM1; k=rsa; p={TEST_DKIM_PUB}"',
        f'sel._domainkey.evil.example. 300 IN TXT "v=DKIM1; k=rsa; p={TEST_DKIM_PUB}"',
    ]
)

POLICY: dict[str, Any] = {
    "relay": {"hostnames": ["relay.example.net"], "outbound_ips": ["192.0.2.10"]},
    "plans": {"small": {"messages": ["100000/1m"]}},
    "customers": [
        {
            "id": "shop",
            "plan": "small",
            "networks": ["203.0.113.0/24"],
            "domains": ["shop.example"],
        },
        {
            "id": "neighbour",
            "plan": "small",
            "networks": ["198.51.100.128/25"],
            "domains": ["example.com"],
        },
    ],
}


def policy_with(**sender: Any) -> Policy:
    extra: dict[str, Any] = {"checks": {"sender": sender}} if sender else {}
    if "dns" in sender:
        extra = {"dns": sender.pop("dns"), "checks": {"sender": sender}}
    return policy_from_dict({**POLICY, **extra})


def run(
    from_value: str,
    mail_from: str = "orders@shop.example",
    policy: Policy | None = None,
    inventory: Inventory | None = None,
) -> tuple[Verdict, dict[str, dict[str, Any]]]:
    policy = policy or policy_with()
    data = (
        f"From: {from_value}\r\nTo: b@example.org\r\nSubject: s\r\n"
        "Date: Sat, 28 Nov 2026 09:12:00 +0000\r\nMessage-ID: <o@shop.example>\r\n\r\nbody\r\n"
    ).encode()
    msg = message_from_bytes(data, mail_from=mail_from, client_address="203.0.113.7")
    sender = identify(msg, inventory or Inventory(policy.customers))
    session, store = ZoneResolver(ZONES).session(), FakeStore()
    now = 1_795_900_000.0
    verdict = decide(msg, sender, policy, store, session, stage=Stage.MAIL, now=now)
    if verdict.action in (Action.ACCEPT, Action.QUARANTINE):
        verdict = decide(msg, sender, policy, store, session, stage=Stage.EOM, now=now)
    return verdict, {f.name: f.evidence for f in verdict.findings}


# -- DMARC discovery, RFC 7489 §6.6.3 ------------------------------------------
@pytest.mark.parametrize(
    ("address", "spoof", "action"),
    [
        ("x@strict.example", True, Action.REJECT),  # the control
        ("x@firsttag.example", False, Action.ACCEPT),  # v=DMARC1 not first: no record
        ("x@lowercase-v.example", False, Action.ACCEPT),  # v is case-sensitive
        ("x@tworecords.example", False, Action.ACCEPT),  # several records: no policy
        ("x@mail.spreject.example", True, Action.REJECT),  # sp=reject for subdomains
        ("x@spreject.example", False, Action.ACCEPT),  # p=none at the org domain itself
        ("x@mail.spnone.example", False, Action.ACCEPT),  # sp=none softens subdomains
        ("x@spnone.example", True, Action.REJECT),
        ("x@pct.example", True, Action.QUARANTINE),  # pct<100: the softer action
        ("x@testing.example", True, Action.QUARANTINE),  # t=y: the softer action
        ("x@badp.example", False, Action.ACCEPT),  # invalid p with rua: p=none
    ],
)
def test_dmarc_discovery(address: str, spoof: bool, action: Action) -> None:
    # org-mismatch (1) and foreign-domain (4) come along; neither reaches 5 alone.
    verdict, found = run(address)
    assert ("dmarc-spoof" in found) == spoof, sorted(found)
    assert verdict.action == action, (verdict.action, sorted(found), verdict.score)


def test_soft_dmarc_says_why_and_follows_the_policy_soft_choice() -> None:
    _, found = run("x@pct.example")
    assert found["dmarc-spoof"]["pct"] == 50
    verdict, found = run("x@testing.example", policy=policy_with(dmarc_soft_action="none"))
    assert found["dmarc-spoof"]["testing"] is True
    assert verdict.action == Action.ACCEPT  # logged, not held


# -- ownership across the provider ---------------------------------------------
def test_another_customers_domain_in_from_is_refused_with_advice() -> None:
    verdict, found = run("Billing <billing@example.com>")
    assert found["other-customer-domain"]["domains"] == ["example.com"]
    assert verdict.action == Action.REJECT
    assert verdict.reply is not None
    assert "belongs to another customer of this relay; send as a domain of your own" in (
        verdict.reply.text
    )


def test_another_customers_subdomain_and_envelope_are_theirs_too() -> None:
    verdict, found = run("x@news.example.com")
    assert "other-customer-domain" in found and verdict.action == Action.REJECT
    verdict, found = run("orders@shop.example", mail_from="bounce@example.com")
    assert found["other-customer-domain"]["domains"] == ["example.com"]


def test_other_customer_domain_can_quarantine_instead() -> None:
    verdict, found = run("x@example.com", policy=policy_with(other_customer_domain="quarantine"))
    assert "other-customer-domain" in found and verdict.action == Action.QUARANTINE


def test_the_owner_itself_is_not_refused() -> None:
    policy = policy_with()
    msg = message_from_bytes(
        b"From: billing@example.com\r\n\r\n", mail_from="billing@example.com",
        client_address="198.51.100.200",
    )  # fmt: skip
    sender = identify(msg, Inventory(policy.customers))
    assert sender.customer == "neighbour"
    verdict = decide(
        msg, sender, policy, FakeStore(), ZoneResolver(ZONES).session(), stage=Stage.EOM
    )
    assert "other-customer-domain" not in {f.name for f in verdict.findings}


def test_an_unknown_client_is_not_another_customer() -> None:
    # A VPS in no inventory entry may be the owner's own, not listed yet: the
    # forced action is for customers the relay can tell apart.
    policy = policy_with()
    msg = message_from_bytes(
        b"From: orders@shop.example\r\n\r\n", mail_from="orders@shop.example",
        client_address="192.0.2.200",
    )  # fmt: skip
    sender = identify(msg, Inventory(policy.customers))
    assert sender.customer is None
    verdict = decide(
        msg, sender, policy, FakeStore(), ZoneResolver(ZONES).session(), stage=Stage.EOM
    )
    assert "other-customer-domain" not in {f.name for f in verdict.findings}


def test_the_reverse_index_covers_the_inventory_file_and_runtime_overrides(
    tmp_path: Any, redis_store: RedisStore
) -> None:
    (tmp_path / "customers.csv").write_text(
        "id,plan,networks,sasl_users,domains\nfiled,small,192.0.2.128/25,,filed.example\n"
    )
    policy = policy_from_dict({**POLICY, "limits": {"inventory": {"file": "customers.csv"}}})
    base = base_customers(policy, tmp_path / "policy.toml")
    live = LiveInventory(base, redis_store, refresh=3600)
    try:
        _, found = run("x@filed.example", policy=policy, inventory=live)
        assert found["other-customer-domain"]["owners"] == ["filed"]
        override = {"id": "late", "plan": "small", "networks": [], "domains": ["late.example"]}
        redis_store.client.hset(overrides_key(redis_store), "late", json.dumps(override))
        _, found = run("x@late.example", policy=policy, inventory=live)
        assert "other-customer-domain" not in found  # not refreshed yet
        live.refresh_now()
        _, found = run("x@late.example", policy=policy, inventory=live)
        assert found["other-customer-domain"]["owners"] == ["late"]
    finally:
        live.close()


# -- DNS failing open skips only what depended on it -----------------------------
def test_fail_open_keeps_dns_free_findings_and_other_domains() -> None:
    policy = policy_with(dns={"on_error": "open"})
    verdict, found = run("x@slow.example, service@paypal.com", policy=policy)
    assert "foreign-domain" in found and "org-mismatch" in found  # no DNS needed
    assert "dmarc-spoof" in found  # paypal.com's lookups did not fail
    assert verdict.action == Action.REJECT


def test_fail_closed_still_tempfails() -> None:
    verdict, found = run("x@slow.example")
    assert verdict.action == Action.TEMPFAIL
    assert "dns-unavailable" in found
