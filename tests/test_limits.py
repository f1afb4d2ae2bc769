"""Rate limits, warm-up, adaptive limits, bursts and escalation through the engine,
against a real redis-server (no MTA; the end-to-end tests add Postfix)."""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from relaywarden import audit
from relaywarden.checks import Check, Stage
from relaywarden.checks import limits as limits_check
from relaywarden.devstack.sink import Sink
from relaywarden.identity import Inventory
from relaywarden.inventory import IndexedInventory, load_file
from relaywarden.limits import escalation
from relaywarden.limits.status import subject_status
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.policy.inventory import CustomerEntry
from relaywarden.policy.limits import EmailSection, WebhookSection
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from relaywarden.verdict import Action, Finding
from tests.limits_support import count_round_trips, transaction

BASE: dict[str, Any] = {
    "plans": {
        "small": {
            "messages": ["5/1m", "100/1h"],
            "recipients": ["20/1m"],
            "customer": {"messages": ["50/1m"]},
        },
        "tiny": {"messages": ["100/1m"], "recipients": ["3/1m"], "unique_domains": ["2/1h"]},
    },
    "customers": [
        {
            "id": "cust-42",
            "plan": "small",
            "networks": ["203.0.113.7/32", "203.0.113.8/32", "2001:db8:42::/64"],
            "sasl_users": ["alice"],
            "domains": ["shop.example"],
        },
        {
            "id": "cust-7",
            "plan": "small",
            "networks": ["198.51.100.9/32"],
            "domains": ["cafe.example"],
        },
        {
            "id": "cust-9",
            "plan": "tiny",
            "networks": ["198.51.100.20/32"],
            "domains": ["bakery.example"],
        },
    ],
}


def policy(**extra: Any) -> Any:
    return policy_from_dict({**BASE, **extra})


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    return redis_store


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The injected clock the Lua scripts use instead of Redis TIME."""

    def set_to(epoch: float) -> None:
        monkeypatch.setattr(limits_check, "_TEST_CLOCK", repr(epoch))

    set_to(1.8e9)
    return set_to


def test_small_plan_vps_is_limited_alone(store: RedisStore) -> None:
    pol = policy()
    results = [transaction(store, pol, client="203.0.113.7") for _ in range(8)]
    assert [r.accepted for r in results] == [True] * 5 + [False] * 3
    refused = results[-1].verdict
    assert refused.reply is not None and refused.reply.line().startswith("451 4.7.1 ")
    finding = next(f for f in refused.findings if f.name == "rate-limit")
    assert finding.evidence["scope"] == "vps:203.0.113.7" and finding.evidence["limit"] == 5
    # Another VPS of the same customer and another customer are not affected.
    assert transaction(store, pol, client="203.0.113.8").accepted
    assert transaction(store, pol, client="198.51.100.9", mail_from="x@cafe.example").accepted


def test_ipv6_addresses_of_one_64_share_counters(store: RedisStore) -> None:
    pol = policy()
    clients = [f"2001:db8:42::{n:x}" for n in range(1, 7)]
    assert [transaction(store, pol, client=c).accepted for c in clients] == [True] * 5 + [False]


def test_recipients_over_the_limit_are_tempfailed_at_rcpt(store: RedisStore) -> None:
    pol = policy()
    rcpts = tuple(f"r{n}@example.org" for n in range(5))
    first = transaction(
        store, pol, client="198.51.100.20", mail_from="x@bakery.example", rcpts=rcpts
    )
    assert first.accepted and first.refused_rcpts == list(rcpts[3:])
    second = transaction(store, pol, client="198.51.100.20", mail_from="x@bakery.example")
    assert second.verdict.action == Action.TEMPFAIL and second.verdict.reply is not None
    assert second.verdict.reply.code == 451 and second.verdict.reply.enhanced == "4.7.1"


def test_unique_domain_spread_is_limited_locally(store: RedisStore, clock: Any) -> None:
    """Unique limits are decided at RCPT without Redis: a domain the window counted
    already is free, a new one beyond the limit is refused (and a full unique
    window does not refuse at MAIL FROM: mail to those already counted still goes)."""
    pol = policy()
    rcpts = ("a@example.org", "b@example.org", "c@example.net", "d@example.com")
    bakery = {"client": "198.51.100.20", "mail_from": "x@bakery.example"}
    res = transaction(store, pol, rcpts=rcpts, **bakery)  # type: ignore[arg-type]
    assert res.accepted and res.refused_rcpts == ["d@example.com"]
    clock(1.8e9 + 70)  # the recipients' minute has passed; the domains' hour has not
    more = ("e@example.org", "f@example.com", "g@example.net")
    res = transaction(store, pol, rcpts=more, **bakery)  # type: ignore[arg-type]
    assert res.accepted and res.refused_rcpts == ["f@example.com"]
    units = {f.evidence["unit"] for f in res.verdict.findings if f.name == "rate-limit"}
    assert units <= {"unique_domains"}


def test_two_round_trips_per_message(store: RedisStore) -> None:
    pol = policy()
    transaction(store, pol)  # loads the scripts
    calls = count_round_trips(store.client)
    assert transaction(
        store, pol, rcpts=("a@example.org", "b@example.net", "c@example.com")
    ).accepted
    assert calls() == 2


def test_warmup_starts_low_and_reaches_the_plan(store: RedisStore, clock: Any) -> None:
    pol = policy(limits={"warmup": {"period": "10d", "start_fraction": 0.4}})
    day = 86400.0
    assert [transaction(store, pol).accepted for _ in range(3)] == [True, True, False]
    status = subject_status(
        store, pol, parse_subject("vps:203.0.113.7"), Inventory(pol.customers), repr(1.8e9)
    )
    assert (
        status["effective"]["warmup_factor"] == 0.4 and "warm-up" in status["effective"]["why"][0]
    )
    clock(1.8e9 + 5 * day)  # halfway: 0.4 + 0.6 * 0.5 = 0.7 of 5 -> 3
    assert [transaction(store, pol).accepted for _ in range(4)] == [True, True, True, False]
    clock(1.8e9 + 11 * day)
    assert [transaction(store, pol).accepted for _ in range(6)] == [True] * 5 + [False]


def test_findings_shrink_the_limits_and_clean_time_restores_them(
    store: RedisStore, clock: Any
) -> None:
    pol = policy(
        blocks=[{"subject": "sender:promo@shop.example", "action": "quarantine"}],
        limits={"adaptive": {"shrink": 0.2, "min_factor": 0.4, "half_life": "1h"}},
    )
    for _ in range(3):  # quarantined by a static block: no feedback (a block is not news)
        assert (
            transaction(store, pol, mail_from="promo@shop.example").verdict.action
            == Action.QUARANTINE
        )
    assert limit_now(store, pol) == 5
    # Nor does a burst: a quarantine for a burst alone must not shrink the send it stopped.
    pol_burst = policy(
        limits={
            "adaptive": {"shrink": 0.1, "min_factor": 0.4, "half_life": "1h"},
            "burst": {"floor": 1, "score": 5.0},
        }
    )
    clock(1.8e9 - 86400 - 60)  # a day of history: the baseline exists
    assert transaction(store, pol_burst, client="203.0.113.8").accepted
    clock(1.8e9 + 200)
    results = [transaction(store, pol_burst, client="203.0.113.8") for _ in range(4)]
    assert [r.verdict.action for r in results] == [Action.ACCEPT] * 2 + [Action.QUARANTINE] * 2
    assert limit_now(store, pol_burst, 1.8e9 + 200, "203.0.113.8") == 5
    # Feedback comes from the mail's own findings: content scored to quarantine.
    pol_feedback = policy(
        limits={"adaptive": {"shrink": 0.1, "min_factor": 0.4, "half_life": "1h"}}
    )
    clock(1.8e9 + 120)
    results = [transaction(store, pol_feedback, extra=(SPAMMY,)) for _ in range(3)]
    assert [r.verdict.action for r in results] == [Action.QUARANTINE] * 3
    assert limit_now(store, pol_feedback, 1.8e9 + 120) == 3  # penalty 3 -> factor 0.7 of 5
    assert limit_now(store, pol_feedback, 1.8e9 + 120 + 10 * 3600) == 5  # recovered


SPAMMY = Check(
    "test.content",
    Stage.EOM,
    lambda ctx: [Finding(check="content", name="spammy", score=5.0, reason="spammy")],
)


def limit_now(store: RedisStore, pol: Any, at: float = 1.8e9, vps: str = "203.0.113.7") -> int:
    status = subject_status(
        store, pol, parse_subject(f"vps:{vps}"), Inventory(pol.customers), repr(at)
    )
    return int(
        next(w["limit"] for w in status["windows"] if w["unit"] == "messages" and w["window"] == 60)
    )


def test_burst_above_baseline_is_a_scored_finding(store: RedisStore, clock: Any) -> None:
    pol = policy(
        plans={**BASE["plans"], "small": {"messages": ["1000/1m"]}},
        limits={"burst": {"floor": 4, "score": 6.0}},
    )
    clock(1.8e9 - 86400 - 60)  # a day of history: the baseline exists
    assert transaction(store, pol).accepted
    clock(1.8e9)
    results = [transaction(store, pol) for _ in range(6)]
    assert [r.verdict.action for r in results] == [Action.ACCEPT] * 5 + [Action.QUARANTINE]
    burst = next(f for f in results[-1].verdict.findings if f.name == "burst-volume")
    assert burst.score == 6.0 and burst.evidence["count"] == 5 and burst.evidence["threshold"] == 4


def test_repeated_hits_block_the_vps_for_longer_each_time(store: RedisStore) -> None:
    # Every hit counted and 550 once blocked: this policy says so explicitly.
    pol = policy(
        limits={
            "escalation": {
                "hits": 3,
                "block_for": "1h",
                "growth": 4,
                "distinct_hits": False,
                "action": "reject",
            }
        }
    )
    jobs: list[escalation.Job] = []
    original = escalation.ESCALATOR.submit
    escalation.ESCALATOR.submit = jobs.append  # type: ignore[method-assign]
    try:
        results = [transaction(store, pol) for _ in range(8)]
        assert sum(not r.accepted for r in results) == 3 and len(jobs) == 1
        notice = escalation.escalate(jobs[0])
        blocked = transaction(store, pol)
        assert len(jobs) == 1  # retries while blocked are not new hits
    finally:
        escalation.ESCALATOR.submit = original  # type: ignore[method-assign]
    assert (
        notice is not None and notice["subject"] == "vps:203.0.113.7" and notice["duration"] == "1h"
    )
    assert "relaywarden unblock vps:203.0.113.7" in notice["unblock"]
    assert blocked.verdict.action == Action.REJECT and blocked.verdict.reply is not None
    assert blocked.verdict.reply.line().startswith("550 5.7.1 ")
    assert escalation.escalate(jobs[0]) is None  # already blocked: nothing twice
    trail = audit.read(store)
    assert (trail[0].actor, trail[0].action, trail[0].via) == ("relaywarden", "block", "milter")
    # The block and its claim run out (as they do after block_for): the next
    # escalation within `memory` lasts growth times longer.
    store.remove_block(parse_subject("vps:203.0.113.7"))
    store.client.delete(escalation.claim_key(store, parse_subject("vps:203.0.113.7")))
    again = escalation.escalate(jobs[0])
    assert again is not None and again["duration"] == "4h" and again["automatic_blocks"] == 2


def test_webhook_is_retried_with_backoff_and_bounded() -> None:
    received: list[dict[str, Any]] = []
    statuses = iter([500, 503, 200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(next(statuses, 200))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    slept: list[float] = []
    try:
        cfg = WebhookSection(
            url=f"http://127.0.0.1:{server.server_port}/hook", attempts=3, backoff=0.5
        )
        assert escalation.post_webhook(cfg, {"subject": "vps:203.0.113.7"}, sleep=slept.append)
        assert len(received) == 3 and slept == [0.5, 1.0]
        bounded = WebhookSection(url="http://127.0.0.1:1/hook", attempts=2, backoff=0.1)
        assert not escalation.post_webhook(bounded, {"subject": "x"}, sleep=slept.append)
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_login_stays_inside_its_keys(store: RedisStore) -> None:
    evil = "{a}:\n\x00b"
    pol = policy(
        plans={**BASE["plans"], "default": {"messages": ["2/1m"], "user": {"messages": ["1/1m"]}}}
    )
    assert transaction(store, pol, client="192.0.2.9", login=evil).accepted
    assert not transaction(store, pol, client="192.0.2.9", login=evil).accepted
    assert transaction(store, pol, client="192.0.2.9", login="a").accepted
    keys = store.client.keys("*")
    assert all(b"{a}" not in k and b"\n" not in k for k in keys)
    assert all(store.client.ttl(k) > 0 for k in keys if k.startswith(b"rwtest:l:"))


def test_redis_down_is_a_dependency_error(store: RedisStore) -> None:
    pol = policy()
    dead = RedisStore(redis.Redis(host="127.0.0.1", port=1, socket_timeout=1), "rwtest")
    result = transaction(dead, pol)
    assert result.verdict.action == Action.TEMPFAIL and result.verdict.reply is not None
    assert result.verdict.reply.line().startswith("451 4.3.0")


def test_policy_rejects_unknown_plans_and_bad_rates() -> None:
    with pytest.raises(PolicyError, match="unknown plan 'gold'"):
        policy_from_dict({"customers": [{"id": "c", "plan": "gold"}]})
    with pytest.raises(PolicyError, match=r"plans\.x\.messages\[0\]: .*not a rate"):
        policy_from_dict({"plans": {"x": {"messages": ["five a minute"]}}})
    with pytest.raises(PolicyError, match="same window"):
        policy_from_dict({"plans": {"x": {"messages": ["5/1m", "6/60s"]}}})


def test_inventory_file_csv_and_errors(tmp_path: Path) -> None:
    pol = policy()
    good = tmp_path / "c.csv"
    good.write_text(
        "id,plan,networks,sasl_users,domains\n"
        "cust-1,small,192.0.2.0/28 2001:db8:1::/64,bob,bakery.example\n"
    )
    [entry] = load_file(good, pol)
    assert entry.networks == ["192.0.2.0/28", "2001:db8:1::/64"] and entry.sasl_users == ["bob"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,plan,networks\ncust-1,small,192.0.2.0/28\ncust-2,gold,192.0.2.16/28\n")
    with pytest.raises(PolicyError, match=r"bad.csv: line 3: plan: unknown plan 'gold'"):
        load_file(bad, pol)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1))
def test_indexed_inventory_agrees_with_the_plain_scan(v4: int, v6tail: int) -> None:
    customers = [
        CustomerEntry(id="a", networks=["0.0.0.0/1", "2001:db8::/32"]),
        CustomerEntry(id="b", networks=["128.0.0.0/2", "2001:db8:42::/64"]),
        CustomerEntry(id="c", networks=[f"{ipaddress.IPv4Address(v4)}/32"]),
        CustomerEntry(id="d", networks=["192.0.2.0/24"]),
    ]
    plain, indexed = Inventory(customers), IndexedInventory(customers)
    for address in (
        ipaddress.IPv4Address(v4),
        ipaddress.IPv4Address(v4 ^ 1),
        ipaddress.IPv6Address(f"2001:db8:42::{v6tail:x}"),
        ipaddress.IPv6Address(f"2001:db8:7::{v6tail:x}"),
    ):
        assert indexed.lookup(address, "") == plain.lookup(address, "")


def test_scripts_are_reloaded_after_a_flush(store: RedisStore) -> None:
    pol = policy()
    assert transaction(store, pol).accepted
    store.client.script_flush()
    assert transaction(store, pol).accepted  # NOSCRIPT at MAIL FROM: loaded, retried once
    status = subject_status(store, pol, parse_subject("vps:203.0.113.7"), Inventory(pol.customers))
    assert (
        next(w["count"] for w in status["windows"] if w["window"] == 60 and w["unit"] == "messages")
        == 2
    )


def test_customer_cap_global_ceiling_and_overrides(store: RedisStore) -> None:
    pol = policy(
        plans={
            **BASE["plans"],
            "small": {"messages": ["5/1m"], "customer": {"messages": ["3/1m"]}},
        },
        limits={
            "global": {"messages": ["6/1m"]},
            "overrides": [{"subject": "vps:198.51.100.9", "limits": {"messages": ["1/1m"]}}],
        },
    )
    # cust-42's two VPSes share the customer cap of 3.
    sent = [transaction(store, pol, client=c).accepted for c in ["203.0.113.7", "203.0.113.8"] * 2]
    assert sent == [True, True, True, False]
    # cust-7's VPS is overridden down to 1 a minute.
    cafe = {"client": "198.51.100.9", "mail_from": "x@cafe.example"}
    assert [transaction(store, pol, **cafe).accepted for _ in range(2)] == [True, False]  # type: ignore[arg-type]
    # 4 accepted so far; the relay-wide ceiling of 6 stops the unknown VPSes at 2.
    unknown = [transaction(store, pol, client=f"192.0.2.{n}").accepted for n in range(1, 5)]
    assert unknown == [True, True, False, False]
    last = transaction(store, pol, client="192.0.2.9").verdict
    assert any(f.evidence.get("scope") == "global" for f in last.findings)


def test_notice_email_goes_through_an_smtp_server() -> None:
    with Sink() as sink:
        cfg = EmailSection(to=["abuse@example.net"], relay=f"127.0.0.1:{sink.port}")
        notice = {
            "subject": "vps:203.0.113.7",
            "action": "reject",
            "duration": "1h",
            "reason": "automatic: 10 rate-limit hits or bursts within 1h",
            "unblock": "relaywarden unblock vps:203.0.113.7 --reason TEXT",
        }
        assert escalation.send_email(cfg, notice, sleep=lambda s: None)
        [mail] = sink.wait_for(1)
    assert mail.rcpt_tos == ("abuse@example.net",)
    assert mail.subject == "RelayWarden automatic block: vps:203.0.113.7"
    assert b"relaywarden unblock vps:203.0.113.7" in mail.raw
    dead = EmailSection(to=["abuse@example.net"], relay="127.0.0.1:1", attempts=2)
    assert not escalation.send_email(dead, notice, sleep=lambda s: None)
