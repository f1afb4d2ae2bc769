"""URL and sender domain blocklists against the devstack's DNS server (its test
blocklist zone), sharing the message's DNS session; phishing-shaped messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaywarden.checks import Stage
from relaywarden.devstack.dns import BLOCKLIST_ZONE, SILENT_DOMAIN, DnsServer
from relaywarden.dns import Resolver
from relaywarden.engine import decide
from relaywarden.identity import Sender
from relaywarden.message import message_from_bytes
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.verdict import Action
from tests.fakes import FakeStore
from tests.mail import message


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = DnsServer(Path(tmp_path_factory.mktemp("dns")))
    yield server.start()
    server.stop()


def policy(**reputation: Any):  # type: ignore[no-untyped-def]
    base = {
        "checks": {"sender": {"enabled": False}, "headers": {"enabled": False}},
        "brands": {"protected": ["paypal.com"]},
        "reputation": reputation,
    }
    return policy_from_dict(base)


def judge(nameserver: str, data: bytes, pol, mail_from: str = "news@shop.example"):  # type: ignore[no-untyped-def]
    msg = message_from_bytes(data, mail_from=mail_from)
    session = Resolver([nameserver], timeout=0.3, budget=1.0).session()
    verdict = decide(msg, Sender(vps="203.0.113.7"), pol, FakeStore(), session, stage=Stage.EOM)
    return verdict, session


def mail(body: str, mail_from: str = "news@shop.example", **kw: Any) -> bytes:
    return message(mail_from, kw.pop("subject", "Offers"), body=body.encode(), **kw)


URLS = {"lists": [{"zone": BLOCKLIST_ZONE}]}


def test_listed_url_domain_is_a_finding(nameserver: str) -> None:
    body = "Your prize: https://win.phish-bait.example/claim?id=7 and https://shop.example/"
    verdict, session = judge(nameserver, mail(body), policy(**URLS))
    (hit,) = [f for f in verdict.findings if f.check == "reputation"]
    assert hit.name == "dnsbl-url" and hit.score == 5.0
    assert hit.evidence == {
        "zone": BLOCKLIST_ZONE,
        "domain": "phish-bait.example",
        "code": "127.0.1.4",
    }
    assert verdict.action == Action.QUARANTINE
    # Asked through the message's own session (its budget and lookup cap); the
    # first listed domain is the finding, so shop.example was not asked.
    assert session.lookups == 1


def test_unlisted_refused_and_unmapped_codes_are_not_findings(nameserver: str) -> None:
    clean, _ = judge(nameserver, mail("See https://shop.example/a"), policy(**URLS))
    assert not [f for f in clean.findings if f.check == "reputation"]
    refused, _ = judge(nameserver, mail("See http://refused.example/x"), policy(**URLS))
    assert not [f for f in refused.findings if f.check == "reputation"]
    # With codes mapped, only those count, each with its own score.
    mapped = {"lists": [{"zone": BLOCKLIST_ZONE, "codes": {"127.0.1.2": 3.0}}]}
    other, _ = judge(nameserver, mail("Go to https://phish-bait.example/"), policy(**mapped))
    assert not [f for f in other.findings if f.check == "reputation"]


def test_sender_domain_list(nameserver: str) -> None:
    pol = policy(lists=[{"zone": BLOCKLIST_ZONE, "applies_to": "senders", "score": 2.5}])
    data = mail("Nothing to see here at all", "offers@mail.spam-sender.example")
    verdict, _ = judge(nameserver, data, pol, "offers@mail.spam-sender.example")
    (hit,) = [f for f in verdict.findings if f.check == "reputation"]
    assert (hit.name, hit.score, hit.evidence["domain"]) == (
        "dnsbl-sender",
        2.5,
        "spam-sender.example",
    )


def test_a_dead_blocklist_is_skipped_or_applies_the_dns_fail_mode(nameserver: str) -> None:
    body = "See https://phish-bait.example/ now"
    dead = {"zone": SILENT_DOMAIN}
    skipped, _ = judge(nameserver, mail(body), policy(lists=[dead, {"zone": BLOCKLIST_ZONE}]))
    # The silent list times out within the budget; the next list is still asked.
    assert [f.name for f in skipped.findings if f.check == "reputation"] == ["dnsbl-url"]
    strict, _ = judge(nameserver, mail(body), policy(lists=[dead], on_error="dns"))
    assert strict.action == Action.TEMPFAIL
    assert strict.reply is not None and strict.reply.enhanced == "4.4.3"


def test_blocklist_config_errors_name_the_key() -> None:
    with pytest.raises(PolicyError, match=r"reputation\.lists\[0\]: zone .bad zone. is not a DNS"):
        policy(lists=[{"zone": "bad zone"}])
    with pytest.raises(PolicyError, match=r"127\.0\.0\.0/8"):
        policy(lists=[{"zone": BLOCKLIST_ZONE, "codes": {"10.0.0.1": 1.0}}])


def test_phishing_shape_brand_named_link_elsewhere(nameserver: str) -> None:
    pol = policy()
    phish = mail(
        "Dear customer, we noticed unusual activity. Verify your account: https://paypa1-secure.example/x",
        "service@vps.example",
        subject="PayPal: your account is limited",
    )
    verdict, _ = judge(nameserver, phish, pol, "service@vps.example")
    (hit,) = [f for f in verdict.findings if f.name == "phishing-shape"]
    assert hit.evidence == {"brand": "paypal.com", "links": ["paypa1-secure.example"]}
    assert verdict.action == Action.QUARANTINE
    # A shop that accepts PayPal and links to itself is not phishing.
    shop = mail("We now accept PayPal at checkout: https://shop.example/checkout")
    clean, _ = judge(nameserver, shop, pol)
    assert not [f for f in clean.findings if f.name == "phishing-shape"]
    # The brand itself, linking to its own site: not phishing either.
    own = mail("Log in to review: https://www.paypal.com/x", "service@paypal.com", subject="PayPal")
    brand, _ = judge(nameserver, own, pol, "service@paypal.com")
    assert not [f for f in brand.findings if f.name == "phishing-shape"]
