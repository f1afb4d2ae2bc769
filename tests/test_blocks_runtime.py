"""Blocks: `vps:` subjects canonical wherever they are written, `network:` and
`domain:` blocks made at runtime enforced, and the automatic-block notice a
message the relay's own checks accept."""

from __future__ import annotations

import time

import pytest

from relaywarden import blocking
from relaywarden.checks import Stage
from relaywarden.devstack.dns import DEFAULT_ZONES
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.limits import escalation
from relaywarden.message import message_from_bytes
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.store import RedisStore
from relaywarden.subjects import SubjectError, parse_subject
from relaywarden.verdict import Action
from relaywarden.wideblocks import WIDE, Refresher
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore


@pytest.mark.parametrize(
    ("text", "prefix", "canonical"),
    [
        ("vps:203.0.113.7", 64, "vps:203.0.113.7"),
        ("vps:203.0.113.7/32", 64, "vps:203.0.113.7"),
        ("vps: 203.0.113.7 ", 64, "vps:203.0.113.7"),
        ("vps:::ffff:203.0.113.7", 64, "vps:203.0.113.7"),
        ("vps:2001:DB8:0:0:1::5", 64, "vps:2001:db8::/64"),
        ("vps:2001:db8::5/128", 64, "vps:2001:db8::/64"),
        ("vps:2001:0db8:0000:0000::/64", 64, "vps:2001:db8::/64"),
        ("vps:[2001:db8::5]", 64, "vps:2001:db8::/64"),
        ("vps:IPv6:2001:db8::5", 64, "vps:2001:db8::/64"),
        ("vps:2001:db8:0:ff::1", 56, "vps:2001:db8::/56"),
        ("network:203.0.113.9/24", 64, "network:203.0.113.0/24"),
        ("network:2001:DB8::/32", 64, "network:2001:db8::/32"),
        ("domain:Shop.Example.", 64, "domain:shop.example"),
    ],
)
def test_subjects_are_canonical(text: str, prefix: int, canonical: str) -> None:
    assert str(parse_subject(text, prefix)) == canonical


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("vps:203.0.113.0/24", "use network:"),
        ("vps:2001:db8::/48", "wider than one VPS"),
        ("vps:banana", "not an IP address"),
        ("vps:2001:db8::1::2", "not an IP address"),
        ("vps:", "no value"),
        ("network:not-a-net", "does not appear"),
    ],
)
def test_uncanonicalisable_subjects_are_refused_clearly(text: str, why: str) -> None:
    with pytest.raises(SubjectError, match=why):
        parse_subject(text, 64)


def test_policy_file_vps_blocks_use_the_policys_ipv6_prefix() -> None:
    policy = policy_from_dict(
        {
            "identity": {"ipv6_prefix": 56},
            "blocks": [
                {"subject": "vps:2001:DB8:0:FF::1"},
                {"subject": "vps:198.51.100.7/32"},
            ],
        }
    )
    assert [str(b.subject) for b in policy.blocks] == ["vps:2001:db8::/56", "vps:198.51.100.7"]
    with pytest.raises(PolicyError) as err:
        policy_from_dict({"blocks": [{"subject": "vps:198.51.100.0/24"}]})
    assert "blocks" in "\n".join(err.value.errors)


def test_a_vps_block_written_any_way_refuses_that_vps(redis_store: RedisStore) -> None:
    policy = policy_from_dict({})
    for written in ("vps:2001:DB8::1/128", "vps:2001:db8:0:0:abcd::9"):
        subject = parse_subject(written, policy.identity.ipv6_prefix)
        blocking.block(redis_store, subject, actor="t", reason="r", duration=60)
        msg = message_from_bytes(
            b"From: a@example.org\r\n\r\n", mail_from="a@example.org", client_address="2001:db8::77"
        )
        sender = identify(msg, Inventory([]))
        verdict = decide(msg, sender, policy, redis_store, None, stage=Stage.MAIL)
        assert verdict.action == Action.REJECT, written
        blocking.unblock(redis_store, subject, actor="t")


# -- network: and domain: made at runtime ------------------------------------------
@pytest.fixture
def wide(redis_store: RedisStore):  # type: ignore[no-untyped-def]
    refresher = Refresher(lambda: redis_store, lambda: 3600.0)
    yield refresher
    WIDE.load([])


def mail_stage(client: str, mail_from: str) -> Action:
    policy = policy_from_dict({})
    msg = message_from_bytes(
        b"From: x@example.org\r\n\r\n", mail_from=mail_from, client_address=client
    )
    verdict = decide(msg, identify(msg, Inventory([])), policy, FakeStore(), None, stage=Stage.MAIL)
    return verdict.action


@pytest.mark.parametrize(
    ("subject", "client", "mail_from"),
    [
        ("network:198.51.100.0/24", "198.51.100.77", "a@example.org"),
        ("network:2001:db8::/32", "2001:db8:5::1", "a@example.org"),
        ("domain:example.org", "192.0.2.200", "a@example.org"),
        ("domain:example.org", "192.0.2.200", "a@news.example.org"),  # a subdomain
    ],
)
def test_runtime_network_and_domain_blocks_are_enforced_after_a_refresh(
    redis_store: RedisStore, wide: Refresher, subject: str, client: str, mail_from: str
) -> None:
    target = parse_subject(subject, 64)
    blocking.block(redis_store, target, actor="t", reason="r", duration=60)
    assert mail_stage(client, mail_from) == Action.ACCEPT  # not refreshed yet
    wide.refresh_now()
    assert mail_stage(client, mail_from) == Action.REJECT
    assert mail_stage("192.0.2.201", "b@example.net") == Action.ACCEPT  # others untouched
    blocking.unblock(redis_store, target, actor="t")
    wide.refresh_now()
    assert mail_stage(client, mail_from) == Action.ACCEPT


def test_an_expired_runtime_block_is_not_enforced(redis_store: RedisStore, wide: Refresher) -> None:
    target = parse_subject("network:198.51.100.0/24", 64)
    blocking.block(redis_store, target, actor="t", reason="r", duration=60)
    wide.refresh_now()
    [(_, record)] = WIDE.networks
    msg = message_from_bytes(b"\r\n", mail_from="a@example.org", client_address="198.51.100.9")
    assert WIDE.matching(msg, time.time())
    assert not WIDE.matching(msg, record.until + 1)  # type: ignore[operator]


# -- the automatic-block notice ----------------------------------------------------
def test_the_automatic_block_notice_passes_the_relays_own_checks() -> None:
    policy = policy_from_dict(
        {
            "relay": {"hostnames": ["relay.example.net"], "outbound_ips": ["192.0.2.10"]},
            "limits": {"escalation": {"email": {"to": ["abuse@example.org"]}}},
        }
    )
    sender = escalation.notice_sender(policy)
    assert sender == "relaywarden@relay.example.net"
    notice = {
        "subject": "vps:203.0.113.9",
        "action": "reject",
        "duration": "1h",
        "reason": "10 limit hits in 1h",
        "unblock": "relaywarden unblock vps:203.0.113.9",
    }
    mail = escalation.notice_email(policy.limits.escalation.email, notice, sender)
    zones = DEFAULT_ZONES + "\nrelay.example.net. 300 IN A 192.0.2.10"
    msg = message_from_bytes(mail.as_bytes(), mail_from=sender, client_address="127.0.0.1")
    who = identify(msg, Inventory(policy.customers))
    session, store = ZoneResolver(zones).session(), FakeStore()
    verdict = decide(msg, who, policy, store, session, stage=Stage.MAIL)
    assert verdict.action == Action.ACCEPT, verdict.findings
    verdict = decide(msg, who, policy, store, session, stage=Stage.EOM)
    assert verdict.action == Action.ACCEPT and not verdict.findings, verdict.findings


def test_the_old_default_notice_sender_was_refused() -> None:
    policy = policy_from_dict({})
    msg = message_from_bytes(
        b"From: relaywarden@localhost\r\n\r\n", mail_from="relaywarden@localhost",
        client_address="127.0.0.1",
    )  # fmt: skip
    verdict = decide(msg, identify(msg, Inventory([])), policy, FakeStore(), None, stage=Stage.MAIL)
    assert verdict.action == Action.REJECT  # why the default changed
