"""The engine without any MTA: real message files, a fake store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from relaywarden.checks import Stage
from relaywarden.engine import decide
from relaywarden.identity import identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import policy_from_dict
from relaywarden.verdict import Action
from tests.fakes import FakeStore

EML = Path(__file__).parent / "eml"
# The .eml files' Date (plus an hour): the headers check compares Date with now.
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp()

POLICY = policy_from_dict(
    {
        "blocks": [
            {"subject": "network:192.0.2.66/32", "reason": "known spam source"},
            {"subject": "user:mallory", "action": "tempfail", "reason": "under review"},
            {"subject": "sender:bulk@shop.example", "action": "quarantine", "reason": "held"},
            {"subject": "domain:spam.example", "action": "discard", "reason": "sinkholed"},
            {"subject": "network:2001:db8:bad::/48", "reason": "v6 spam source"},
        ]
    }
)


def verdict_for(name: str, stage: Stage, store: FakeStore | None = None, **kw: str):  # type: ignore[no-untyped-def]
    msg = message_from_bytes((EML / name).read_bytes(), **kw)
    return decide(msg, identify(msg), POLICY, store or FakeStore(), stage=stage, now=NOW)


# file, envelope overrides, stage, expected action, expected code, expected finding names
TABLE = [
    ("clean.eml", {}, Stage.MAIL, Action.ACCEPT, None, []),
    ("clean.eml", {}, Stage.EOM, Action.ACCEPT, None, []),
    (
        "clean.eml",
        {"client_address": "192.0.2.66"},
        Stage.MAIL,
        Action.REJECT,
        "550 5.7.1",
        ["blocked"],
    ),
    (
        "clean.eml",
        {"client_address": "::ffff:192.0.2.66"},
        Stage.MAIL,
        Action.REJECT,
        "550 5.7.1",
        ["blocked"],
    ),
    (
        "clean.eml",
        {"client_address": "2001:db8:bad:1::9"},
        Stage.MAIL,
        Action.REJECT,
        "550 5.7.1",
        ["blocked"],
    ),
    ("clean.eml", {"client_address": "2001:db8:bae::9"}, Stage.MAIL, Action.ACCEPT, None, []),
    ("clean.eml", {"sasl_user": "mallory"}, Stage.MAIL, Action.TEMPFAIL, "451 4.7.1", ["blocked"]),
    (
        "clean.eml",
        {"mail_from": "BULK@shop.example"},
        Stage.MAIL,
        Action.QUARANTINE,
        None,
        ["blocked"],
    ),
    (
        "clean.eml",
        {"mail_from": "a@news.spam.example"},
        Stage.MAIL,
        Action.DISCARD,
        None,
        ["blocked"],
    ),
    (
        "clean.eml",
        {"mail_from": "not-an-address"},
        Stage.MAIL,
        Action.REJECT,
        "550 5.1.7",
        ["invalid-envelope-sender"],
    ),
    ("clean.eml", {"mail_from": ""}, Stage.MAIL, Action.ACCEPT, None, []),
    ("clean.eml", {"mail_from": '"john doe"@shop.example'}, Stage.MAIL, Action.ACCEPT, None, []),
    ("clean.eml", {"mail_from": "用户@例子.广告"}, Stage.MAIL, Action.ACCEPT, None, []),
    # Its Subject holds invalid UTF-8: a low-weight headers finding, still accepted.
    (
        "eightbit.eml",
        {"mail_from": "x@shop.example"},
        Stage.EOM,
        Action.ACCEPT,
        None,
        ["invalid-utf8"],
    ),
    (
        "from-no-address.eml",
        {"mail_from": "x@shop.example"},
        Stage.EOM,
        Action.REJECT,
        "550 5.1.7",
        ["invalid-from-header"],
    ),
    (
        "from-invalid-domain.eml",
        {"mail_from": "x@shop.example"},
        Stage.EOM,
        Action.REJECT,
        "550 5.1.7",
        ["invalid-from-header"],
    ),
]


@pytest.mark.parametrize(("name", "env", "stage", "action", "code", "findings"), TABLE)
def test_table(name, env, stage, action, code, findings):  # type: ignore[no-untyped-def]
    verdict = verdict_for(name, stage, **env)
    assert verdict.action == action
    assert [f.name for f in verdict.findings] == findings
    if code is None:
        assert verdict.reply is None or action in (Action.ACCEPT,)
    else:
        assert verdict.reply is not None
        assert f"{verdict.reply.code} {verdict.reply.enhanced}" == code
        assert verdict.ref in verdict.reply.text


def test_reply_names_reason_and_ref_never_message_content() -> None:
    verdict = verdict_for("clean.eml", Stage.MAIL, client_address="192.0.2.66")
    assert verdict.reply is not None
    assert "known spam source" in verdict.reply.text
    assert "shipped" not in verdict.reply.text  # the subject is the customer's, not ours to echo


def test_dynamic_block_from_store() -> None:
    store = FakeStore()
    store.block("vps:203.0.113.7", "reject", "abuse report 123")
    verdict = verdict_for("clean.eml", Stage.MAIL, store)
    assert verdict.action == Action.REJECT
    assert verdict.findings[0].evidence["subject"] == "vps:203.0.113.7"


def test_ipv6_clients_in_one_64_share_a_vps_key() -> None:
    store = FakeStore()
    store.block("vps:2001:db8:42::/64", "tempfail", "burst")
    one = verdict_for("clean.eml", Stage.MAIL, store, client_address="2001:db8:42::1")
    two = verdict_for("clean.eml", Stage.MAIL, store, client_address="2001:db8:42:0:ffff::2")
    other = verdict_for("clean.eml", Stage.MAIL, store, client_address="2001:db8:42:1::1")
    assert one.action == two.action == Action.TEMPFAIL
    assert other.action == Action.ACCEPT


@pytest.mark.parametrize(
    ("mode", "action"), [("tempfail", Action.TEMPFAIL), ("open", Action.ACCEPT)]
)
def test_store_failure_applies_fail_mode(mode: str, action: Action) -> None:
    store = FakeStore()
    store.broken = True
    policy = policy_from_dict({"redis": {"on_error": mode}})
    msg = message_from_bytes((EML / "clean.eml").read_bytes())
    verdict = decide(msg, identify(msg), policy, store, stage=Stage.MAIL)
    assert verdict.action == action
    if action == Action.TEMPFAIL:
        assert verdict.reply is not None and verdict.reply.enhanced == "4.3.0"


def test_score_thresholds_map_to_actions() -> None:
    policy = policy_from_dict({"scoring": {"quarantine": 3, "tempfail": 6, "reject": 9}})
    assert [policy.scoring.action_for(s) for s in (0, 3, 6, 9)] == [
        Action.ACCEPT,
        Action.QUARANTINE,
        Action.TEMPFAIL,
        Action.REJECT,
    ]
