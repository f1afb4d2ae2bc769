"""Rate limits, warm-up, escalation and the limits CLI end to end: real Postfix
(XCLIENT plays the VPSes), real redis-server, the milter as a process, the sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.stack import Stack
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.e2e_support import Receiver
from tests.mail import message

pytestmark = pytest.mark.e2e
RCPT = ["buyer@example.org"]

PLANS = """
[plans.small]
messages = ["5/1m", "100/1h"]
recipients = ["20/1m"]

[plans.tiny]
messages = ["1/1m"]

[[customers]]
id = "cust-42"
plan = "small"
networks = ["203.0.113.7/32", "203.0.113.8/32", "2001:db8:42::/64"]
sasl_users = ["alice"]
domains = ["shop.example"]

[[customers]]
id = "cust-7"
plan = "small"
networks = ["198.51.100.9/32"]
domains = ["cafe.example"]

[[customers]]
id = "cust-9"
plan = "tiny"
networks = ["198.51.100.30/32"]
domains = ["bakery.example"]
"""


def _start(tmp: Path, text: str) -> Stack:
    policy = tmp / "policy.toml"
    policy.write_text(text)
    return Stack(policy).start()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    text = (
        PLANS
        + f"""
[limits.escalation]
hits = 4
block_for = "1h"
# The test's hits come within seconds: count each (the default counts one per
# sub-window). The block answers with the default action: 451, never a bounce.
distinct_hits = false

[limits.escalation.webhook]
url = "{receiver.url}"
attempts = 3
backoff = "100ms"
"""
    )
    stack = _start(tmp_path_factory.mktemp("limited"), text)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def warming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    text = PLANS + '\n[limits.warmup]\nperiod = "10d"\nstart_fraction = 0.4\n'
    stack = _start(tmp_path_factory.mktemp("warming"), text)
    yield stack
    stack.stop()


def fates(
    stack: Stack, count: int, client: str, mail_from: str = "orders@shop.example"
) -> list[str]:
    out = []
    for n in range(count):
        result = stack.send(mail_from, RCPT, message(mail_from, f"note {n}"), client=client)
        outcome = stack.fate(result)
        if outcome.fate == "tempfailed":
            assert outcome.result.code == 451 and outcome.result.enhanced == "4.7.1", outcome.reply
        out.append(outcome.fate)
    return out


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [
        sys.executable,
        "-m",
        "relaywarden",
        *args,
        "--config",
        str(stack.policy),
        "--redis-url",
        stack.redis_url,
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_small_plan_vps_gets_five_others_unaffected(limited: Stack) -> None:
    assert fates(limited, 8, "203.0.113.7") == ["delivered"] * 5 + ["tempfailed"] * 3
    # Same customer, another VPS: its own limit. Another customer: untouched.
    assert fates(limited, 2, "203.0.113.8") == ["delivered"] * 2
    assert fates(limited, 2, "198.51.100.9", "news@cafe.example") == ["delivered"] * 2


def test_addresses_in_one_ipv6_64_share_counters(limited: Stack) -> None:
    out = [fates(limited, 1, f"2001:db8:42::{n}")[0] for n in range(1, 7)]
    assert out == ["delivered"] * 5 + ["tempfailed"]
    status = cli(limited, "status", "vps:2001:db8:42::99", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["subject"] == "vps:2001:db8:42::/64" and report["customer"] == "cust-42"
    minute = next(w for w in report["windows"] if w["unit"] == "messages" and w["window"] == 60)
    assert (minute["count"], minute["limit"], minute["left"]) == (5, 5, 0)


def test_repeated_hits_block_notify_and_unblock(limited: Stack, receiver: Receiver) -> None:
    vps = "vps:198.51.100.30"
    assert (
        fates(limited, 5, "198.51.100.30", "x@bakery.example") == ["delivered"] + ["tempfailed"] * 4
    )
    store = RedisStore(redis.Redis.from_url(limited.redis_url), "rw")
    poll_until(lambda: bool(store.blocks_for([parse_subject(vps)])), 30, "the automatic block")
    poll_until(lambda: any(n["subject"] == vps for n in receiver.notices), 30, "the webhook")
    notice = next(n for n in receiver.notices if n["subject"] == vps)
    assert notice["duration"] == "1h" and f"relaywarden unblock {vps}" in notice["unblock"]
    assert notice["evidence"]["findings"][0]["evidence"]["unit"] == "messages"

    result = limited.send(
        "x@bakery.example", RCPT, message("x@bakery.example"), client="198.51.100.30"
    )
    assert (result.code, result.enhanced) == (451, "4.7.1")  # automatic: deferred
    status = json.loads(cli(limited, "status", vps, "--json").stdout)
    assert status["blocks"][0]["set_by"] == "relaywarden" and status["automatic_blocks"] == 1

    unblocked = cli(limited, "unblock", vps, "--reason", "customer cleaned up", "--as", "tester")
    assert unblocked.returncode == 0 and "unblocked" in unblocked.stdout
    reset = cli(limited, "reset", vps, "--as", "tester")
    assert reset.returncode == 0, reset.stderr
    assert fates(limited, 1, "198.51.100.30", "x@bakery.example") == ["delivered"]


def test_manual_block_by_cli_refuses_at_mail_from(limited: Stack) -> None:
    done = cli(
        limited, "block", "user:alice", "--for", "2h", "--reason", "phishing kit", "--as", "eve"
    )
    assert done.returncode == 0, done.stderr
    result = limited.send(
        "a@shop.example", RCPT, message("a@shop.example"), client="198.51.100.77", login="alice"
    )
    assert (result.code, result.enhanced) == (550, "5.7.1") and "phishing kit" in result.text
    assert cli(limited, "unblock", "user:alice", "--as", "eve").returncode == 0
    bad = cli(limited, "block", "user:alice", "--for", "soon", "--reason", "x")
    assert bad.returncode == 1 and "not a duration" in bad.stderr


def test_new_vps_is_warmed_up(warming: Stack) -> None:
    assert fates(warming, 3, "203.0.113.8") == ["delivered", "delivered", "tempfailed"]
    report = json.loads(cli(warming, "status", "vps:203.0.113.8", "--json").stdout)
    assert report["effective"]["warmup_factor"] == 0.4
    assert report["effective"]["why"][0].startswith("warm-up")


def test_inventory_override_takes_effect_at_runtime(warming: Stack) -> None:
    # An unknown VPS gets the built-in default plan (10/1m, warmed to 4) ...
    set_ = cli(
        warming,
        "inventory",
        "set",
        "cust-new",
        "--plan",
        "tiny",
        "--network",
        "192.0.2.200/32",
        "--domain",
        "bakery.example",
    )
    assert set_.returncode == 0, set_.stderr
    shown = json.loads(cli(warming, "inventory", "show", "cust-new").stdout)
    assert shown["plan"] == "tiny" and shown["source"] == "override"
    # ... until the milter's copy refreshes (10 s by default): then plan tiny, 1/1m.
    store = RedisStore(redis.Redis.from_url(warming.redis_url), "rw")

    def tiny_in_force() -> bool:
        events = store.recent_events(5)
        return any(e.get("customer") == "cust-new" for e in events) or (
            fates(warming, 1, "192.0.2.200", "x@bakery.example") == ["delivered"]
            and store.recent_events(1)[0].get("customer") == "cust-new"
        )

    poll_until(tiny_in_force, 60, "the inventory override", interval=1.0)
    assert fates(warming, 1, "192.0.2.200", "x@bakery.example") == ["tempfailed"]
    assert cli(warming, "inventory", "remove", "cust-new").returncode == 0


def test_redis_restart_reloads_scripts_and_no_error_reaches_the_client(warming: Stack) -> None:
    assert warming.redis is not None and warming.milter is not None
    assert fates(warming, 1, "198.51.100.9", "news@cafe.example") == ["delivered"]
    warming.redis.restart()
    replies = []
    for n in range(5):  # bounded: the first message after the restart may see the reconnect
        outcome = warming.fate(
            warming.send(
                "news@cafe.example",
                RCPT,
                message("news@cafe.example", f"r{n}"),
                client="198.51.100.9",
            )
        )
        replies.append(outcome.reply)
        if outcome.fate == "delivered":
            break
        assert outcome.reply.startswith("451 4.3.0 Temporary relay problem"), outcome.reply
    assert outcome.fate == "delivered", replies
    log = warming.milter.log_text()
    assert "internal error" not in log and "Traceback" not in log
