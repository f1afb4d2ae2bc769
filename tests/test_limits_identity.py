"""One VPS, one budget: the VPS scope keyed by the VPS alone, SASL logins folded
the same way everywhere, and return paths (VERP, SRS, BATV, +tag) reduced to the
sender they stand for. Real redis-server, the engine's limit path."""

from __future__ import annotations

from typing import Any

import pytest

from relaywarden.checks import limits as limits_check
from relaywarden.identity import Inventory, identify
from relaywarden.inventory import IndexedInventory
from relaywarden.message import Message, normalise_ip
from relaywarden.policy import policy_from_dict
from relaywarden.policy.inventory import CustomerEntry
from relaywarden.returnpath import sender_key
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.limits_support import transaction

POLICY: dict[str, Any] = {
    "plans": {
        "three": {"messages": ["3/1m"], "sender": {"messages": ["2/1m"]}},
    },
    "customers": [
        {"id": "cust-a", "plan": "three", "sasl_users": ["Alice"], "domains": ["a.example"]},
        {"id": "cust-b", "plan": "three", "sasl_users": ["bob"], "domains": ["b.example"]},
        {"id": "cust-c", "plan": "three", "sasl_users": ["carol"], "domains": ["c.example"]},
    ],
    "limits": {"escalation": {"enabled": False}, "burst": {"enabled": False}},
}


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_check, "_TEST_CLOCK", "1800000000.0")


def test_a_vps_presenting_several_customers_logins_has_one_vps_budget(
    redis_store: RedisStore,
) -> None:
    policy = policy_from_dict(POLICY)
    accepted = 0
    for n in range(9):
        login = ("alice", "bob", "carol")[n % 3]
        domain = login[0] + ".example"
        result = transaction(
            redis_store,
            policy,
            client="192.0.2.77",
            login=login,
            mail_from=f"news{n}@{domain}",
        )
        accepted += result.accepted
    # Before: each customer's hash tag held its own copy of the VPS: 3 x 3 accepted.
    assert accepted == 3


@pytest.mark.parametrize("login", ["ALICE", "alice", "Alice", " alice"])
def test_sasl_logins_fold_in_the_inventory_the_scopes_and_user_blocks(login: str) -> None:
    policy = policy_from_dict(POLICY)
    for inventory in (Inventory(policy.customers), IndexedInventory(policy.customers)):
        msg = Message(client_address=normalise_ip("192.0.2.1"), sasl_user=login)
        sender = identify(msg, inventory)
        assert (sender.customer, sender.sasl_user) == ("cust-a", "alice")
        assert parse_subject(f"user:{login.strip()}") in sender.subjects(msg)


def test_a_user_block_written_in_any_case_blocks_the_login(redis_store: RedisStore) -> None:
    policy = policy_from_dict(
        {**POLICY, "blocks": [{"subject": "user:ALICE", "action": "reject", "reason": "kit"}]}
    )
    result = transaction(redis_store, policy, client="192.0.2.8", login="aLiCe")
    assert not result.accepted and result.verdict.reply is not None
    assert result.verdict.reply.code == 550


RETURN_PATHS = [
    ("list-bounces+bob=example.org@Lists.A.example", "list-bounces@lists.a.example"),
    ("list-return-42-bob=example.org@a.example", "list-return-#@a.example"),
    ("bounce-4711-bob=example.org@a.example", "bounce-#@a.example"),
    ("prvs=1234abcd=news@a.example", "news@a.example"),
    ("SRS0=HHH=TT=a.example=news@forwarder.example", "news@a.example"),
    ("SRS1=HHH=fwd.example==HHH=TT=a.example=news@fwd2.example", "news@a.example"),
    ("news+summer@a.example", "news@a.example"),
    ("0100018f3ab2c4d1-aa11bb22-cc33-4d5e-9f00-1234567890ab-000000@ses.example", None),
    ("john.smith@a.example", "john.smith@a.example"),
    ("j2@a.example", "j2@a.example"),
    ("", ""),
]


@pytest.mark.parametrize(("address", "expected"), RETURN_PATHS)
def test_return_paths_reduce_to_their_sender(address: str, expected: str | None) -> None:
    key = sender_key(address)
    if expected is None:  # an ESP's per-message id: no digit-bearing segment survives
        assert key.endswith("@ses.example") and not any(c.isdigit() for c in key)
    else:
        assert key == expected


def test_a_verp_list_is_one_sender_for_limits_and_blocks(redis_store: RedisStore) -> None:
    policy = policy_from_dict(POLICY)
    fates = [
        transaction(
            redis_store,
            policy,
            client=f"192.0.2.{10 + n}",  # a VPS each: only the sender scope binds
            login="alice",
            mail_from=f"list-bounces+r{n}=example.org@a.example",
        ).accepted
        for n in range(5)
    ]
    assert fates == [True, True, False, False, False]  # sender: 2/1m
    sender_keys = [k for k in redis_store.client.scan_iter(match="rw:l:*}:s*") if b":q" not in k]
    assert len(sender_keys) == 1

    blocked = policy_from_dict(
        {
            **POLICY,
            "blocks": [
                {"subject": "sender:list-bounces@a.example", "action": "reject", "reason": "x"}
            ],
        }
    )
    result = transaction(
        redis_store,
        blocked,
        client="192.0.2.99",
        login="bob",
        mail_from="list-bounces+someone=example.net@a.example",
    )
    assert not result.accepted


def test_the_inventory_lives_beside_identity() -> None:
    entry = CustomerEntry(id="x", plan="default", sasl_users=["Zed"])
    assert IndexedInventory([entry]).lookup(None, "zED") == entry
