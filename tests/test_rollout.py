"""Rollout: warm-up only for VPSes first seen after the deployment date, and a
reset that does not make an established customer new again unless asked."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from relaywarden.checks import limits as limits_check
from relaywarden.identity import Inventory
from relaywarden.limits.status import reset_keys, scope_of, sender_for
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.limits_support import transaction

T0 = 1.8e9  # the injected clock's start
DAY = 86400.0

POLICY: dict[str, Any] = {
    "plans": {"small": {"messages": ["5/1m"]}},
    "customers": [
        {"id": "old", "plan": "small", "networks": ["203.0.113.7/32"]},
        {"id": "new", "plan": "small", "networks": ["203.0.113.8/32"]},
    ],
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_to(epoch: float) -> None:
        monkeypatch.setattr(limits_check, "_TEST_CLOCK", repr(epoch))

    set_to(T0)
    return set_to


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def sent(store: RedisStore, pol: Any, client: str, n: int) -> int:
    return sum(transaction(store, pol, client=client).accepted for _ in range(n))


def test_only_vpses_first_seen_after_the_deployment_date_warm_up(
    redis_store: RedisStore, clock: Any
) -> None:
    warm = {"period": "10d", "start_fraction": 0.4, "new_after": iso(T0 + DAY)}
    pol = policy_from_dict({**POLICY, "limits": {"warmup": warm}})
    # Seen (e.g. in shadow mode) before the date: an established customer, full plan.
    assert sent(redis_store, pol, "203.0.113.7", 7) == 5
    clock(T0 + 2 * DAY)
    assert sent(redis_store, pol, "203.0.113.7", 7) == 5
    # First seen after the date: a new VPS, 0.4 of its plan.
    assert sent(redis_store, pol, "203.0.113.8", 7) == 2


def test_without_a_date_every_unseen_vps_warms_up(redis_store: RedisStore, clock: Any) -> None:
    pol = policy_from_dict(
        {**POLICY, "limits": {"warmup": {"period": "10d", "start_fraction": 0.4}}}
    )
    assert sent(redis_store, pol, "203.0.113.7", 7) == 2


def test_reset_keeps_the_first_seen_time_unless_asked(redis_store: RedisStore, clock: Any) -> None:
    pol = policy_from_dict(
        {**POLICY, "limits": {"warmup": {"period": "10d", "start_fraction": 0.4}}}
    )
    assert sent(redis_store, pol, "203.0.113.7", 7) == 2
    clock(T0 + 11 * DAY)  # warmed up
    assert sent(redis_store, pol, "203.0.113.7", 7) == 5
    subject = parse_subject("vps:203.0.113.7")
    scope = scope_of(subject, pol, sender_for(subject, pol, Inventory(pol.customers)))
    clock(T0 + 11 * DAY + 120)
    reset_keys(redis_store, scope)
    assert redis_store.client.hget(scope.key, "fs") is not None
    assert sent(redis_store, pol, "203.0.113.7", 7) == 5  # counters gone, not its age
    clock(T0 + 11 * DAY + 240)
    reset_keys(redis_store, scope, restart_warmup=True)
    assert sent(redis_store, pol, "203.0.113.7", 7) == 2  # asked: warms up anew


@pytest.mark.parametrize(
    ("value", "epoch"),
    [
        (datetime.date(2026, 12, 1), 1796083200.0),
        (datetime.datetime(2026, 12, 1, 6, tzinfo=datetime.UTC), 1796104800.0),
        ("2026-12-01T00:00:00Z", 1796083200.0),
    ],
)
def test_new_after_takes_toml_dates_and_iso_text(value: object, epoch: float) -> None:
    pol = policy_from_dict({"limits": {"warmup": {"period": "14d", "new_after": value}}})
    assert pol.limits.warmup.new_after == epoch


def test_new_after_rejects_what_is_not_a_date() -> None:
    with pytest.raises(PolicyError, match=r"limits.warmup.new_after: a date like 2026-12-01"):
        policy_from_dict({"limits": {"warmup": {"new_after": "next tuesday"}}})
