"""Delivery outcomes and stolen logins end to end: real Postfix (XCLIENT plays the
VPSes and logins), the milter as a process, real redis-server, the sink refusing
chosen recipients with 550 5.1.1, and `relaywarden watch --once` reading
Postfix's own maillog."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.sink import Sink
from relaywarden.devstack.stack import Stack
from relaywarden.outcomes import counters
from relaywarden.outcomes.counters import NSUB
from relaywarden.store import RedisStore
from relaywarden.subjects import Subject
from tests.e2e_support import Receiver, cli
from tests.mail import message

pytestmark = pytest.mark.e2e

CUSTOMERS = """
[redis]
on_error = "tempfail"

[quarantine]
relay_name = "relay-e2e"

[plans.default]
messages = ["100000/1m"]

[[customers]]
id = "cust-blaster"
networks = ["203.0.113.50/32"]
domains = ["shop.example"]

[[customers]]
id = "cust-cafe"
networks = ["198.51.100.9/32"]
domains = ["cafe.example"]

[[customers]]
id = "cust-42"
networks = ["203.0.113.7/32"]
sasl_users = ["alice", "office", "dual"]
domains = ["shop.example"]
contact = ["it@shop.example"]
"""


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Sink]:
    """Where the notice email's relay delivers: the customer's inbox, here."""
    with Sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, mailbox: Sink
) -> Iterator[Stack]:
    text = (
        CUSTOMERS
        + f"""
[outcomes]
enabled = true
start_at = "start"

[outcomes.bounced]
share = 0.3
min_count = 20
action = "tempfail"
warn_share = 0.1
warn_min_count = 5

[outcomes.webhook]
url = "{receiver.url}"
attempts = 3
backoff = "100ms"

[limits.escalation]
hits = 3
block_for = "1h"
# The test's deferrals come within seconds: count each one (the default counts
# one hit per subject per sub-window).
distinct_hits = false

[logins]
max_networks = 10
block_for = "1h"

[logins.webhook]
url = "{receiver.url}"
attempts = 3
backoff = "100ms"

[logins.email]
relay = "127.0.0.1:{mailbox.port}"
"""
    )
    policy = tmp_path_factory.mktemp("outcomes") / "policy.toml"
    policy.write_text(text)
    running = Stack(policy).start()
    yield running
    running.stop()


def watch_once(stack: Stack) -> dict[str, int]:
    assert stack.postfix is not None
    out = cli(stack, "watch", "--once", "--log-file", str(stack.postfix.log_file))
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def send(stack: Stack, client: str, rcpt: str, mail_from: str, login: str = "") -> int:
    result = stack.send(mail_from, [rcpt], message(mail_from, to=rcpt), client=client, login=login)
    return result.code


def test_bouncing_vps_is_deferred_and_its_neighbour_is_not(
    stack: Stack, receiver: Receiver
) -> None:
    assert stack.postfix is not None
    stack.sink.refuse("@gone.example")  # 550 5.1.1 User unknown
    blaster, cafe = "203.0.113.50", "198.51.100.9"
    for n in range(40):  # 60 % to recipients that do not exist
        rcpt = f"user{n}@gone.example" if n % 5 in (0, 1, 2) else f"buyer{n}@example.org"
        assert send(stack, blaster, rcpt, "list@shop.example") == 250
    for n in range(50):  # 2 %
        rcpt = "old@gone.example" if n == 25 else f"guest{n}@example.org"
        assert send(stack, cafe, rcpt, "news@cafe.example") == 250
    stack.postfix.wait_queue_empty(timeout=60)

    totals = watch_once(stack)
    assert totals["unknown_lines"] == 0 and totals["deliveries"] >= 90

    store = RedisStore(redis.Redis.from_url(stack.redis_url), "rw")
    now = float(store.client.time()[0])

    def tally(subject: Subject) -> dict[str, int]:
        fields = store.client.hgetall(counters.window_key("rw", subject))
        return counters.counts(fields, 3600.0, NSUB, now)  # type: ignore[arg-type]

    blasted = tally(Subject("vps", blaster))
    assert (blasted["d"], blasted["b"], blasted["u"]) == (16, 24, 24)
    assert tally(Subject("customer", "cust-blaster"))["b"] == 24
    assert (tally(Subject("vps", cafe))["d"], tally(Subject("vps", cafe))["b"]) == (49, 1)

    # The blaster's next message is deferred at MAIL FROM, saying why.
    result = stack.send("list@shop.example", ["x@example.org"], message(), client=blaster)
    assert (result.code, result.enhanced) == (451, "4.7.1"), result.text
    assert "bounced" in result.text
    # The neighbour sends on.
    assert send(stack, cafe, "guest@example.org", "news@cafe.example") == 250
    # Deferred again and again, the blaster is blocked by escalation (3 hits).
    for _ in range(2):
        assert send(stack, blaster, "x@example.org", "list@shop.example") == 451
    poll_until(
        lambda: bool(store.blocks_for([Subject("vps", blaster)])), 10, "the blaster auto-blocked"
    )
    (block,) = store.blocks_for([Subject("vps", blaster)])
    assert block.set_by == "relaywarden"
    # The warning notice reached the abuse team once per subject and kind.
    warned = {(n["subject"], n["kind"]) for n in receiver.notices if "kind" in n}
    assert ("vps:203.0.113.50", "bounced") in warned
    assert not any(s == f"vps:{cafe}" for s, _ in warned)
    decision = json.loads(
        next(
            line
            for line in reversed(stack.milter.log_text().splitlines())  # type: ignore[union-attr]
            if '"bounced"' in line and blaster in line
        )
    )
    finding = next(f for f in decision["findings"] if f["name"] == "bounced")
    assert "24 of 40 delivery attempts bounced (60%)" in finding["evidence"]["explain"]
    # `relaywarden status` shows the same numbers against their thresholds.
    text = cli(stack, "status", f"vps:{blaster}")
    assert "bounced 24 (60%, threshold 30% and 20)" in text
    assert "FINDING bounced: vps:203.0.113.50: 24 of 40 delivery attempts bounced" in text
    report = json.loads(cli(stack, "status", "customer:cust-cafe", "--json"))
    assert report["outcomes"]["counts"]["bounced"] == 1 and report["outcomes"]["findings"] == []
    assert sum(report["outcomes"]["per_hour"]["delivered"]) >= 49


def test_login_from_30_networks_is_stopped_and_blocked(
    stack: Stack, receiver: Receiver, mailbox: Sink
) -> None:
    codes = [
        send(stack, f"198.18.{n}.7", "buyer@example.org", "orders@shop.example", login="alice")
        for n in range(30)
    ]
    assert codes[:10] == [250] * 10
    assert set(codes[10:]) == {451}
    store = RedisStore(redis.Redis.from_url(stack.redis_url), "rw")
    poll_until(lambda: bool(store.blocks_for([Subject("user", "alice")])), 10, "user:alice blocked")
    (block,) = store.blocks_for([Subject("user", "alice")])
    assert block.set_by == "relaywarden" and "client networks" in block.reason
    poll_until(
        lambda: any(n.get("event") == "relaywarden.login-blocked" for n in receiver.notices),
        10,
        "the login-blocked notice",
    )
    # The customer hears of it at its inventory contact, in plain words.
    (told,) = mailbox.wait_for(lambda m: "it@shop.example" in m.rcpt_tos, 10)
    assert told.subject == "Your mail login alice was blocked"
    text = told.raw.decode(errors="replace")
    assert "change it" in text and "networks" in text and "unblock" not in text
    assert told.mail_from.startswith("relaywarden@")
    # Blocked now, from the customer's own VPS too.
    assert send(stack, "203.0.113.7", "b@example.org", "orders@shop.example", "alice") == 451
    report = json.loads(cli(stack, "status", "user:alice", "--json"))["outcomes"]
    assert len(report["networks"]) > 10
    assert any(f["name"] == "login-spread" for f in report["findings"])


def test_two_offices_and_a_vps_with_a_laptop_send_on(stack: Stack) -> None:
    offices = ["198.51.100.20", "203.0.113.120"]
    codes = [
        send(stack, offices[n % 2], "buyer@example.org", "orders@shop.example", login="office")
        for n in range(12)
    ]
    places = ["203.0.113.7", "2001:db8:77::5"]
    codes += [
        send(stack, places[n % 2], "buyer@example.org", "orders@shop.example", login="dual")
        for n in range(12)
    ]
    assert codes == [250] * 24


def test_watch_restart_counts_nothing_twice(stack: Stack, tmp_path: Path) -> None:
    before = watch_once(stack)
    again = watch_once(stack)
    assert again["lines"] == 0 and before["unknown_lines"] == 0


def test_watcher_as_a_thread_of_run(tmp_path: Path) -> None:
    # The stack's directory chosen here, so the policy can name Postfix's log.
    workdir = Path(tempfile.mkdtemp(prefix="rw-e2e-watch-"))
    policy = tmp_path / "policy.toml"
    log_file = workdir / "postfix" / "maillog"
    policy.write_text(
        CUSTOMERS + f'\n[outcomes]\nenabled = true\nstart_at = "start"\nwatch_in_milter = true\n'
        f'log_file = "{log_file}"\npoll = "200ms"\n'
    )
    stack = Stack(policy, workdir=workdir).start()
    try:
        stack.sink.refuse("@gone.example")
        for n in range(5):
            assert send(stack, "203.0.113.50", f"u{n}@gone.example", "list@shop.example") == 250
        store = RedisStore(redis.Redis.from_url(stack.redis_url), "rw")

        def bounced() -> int:
            now = float(store.client.time()[0])
            fields = store.client.hgetall(counters.window_key("rw", Subject("vps", "203.0.113.50")))
            return counters.counts(fields, 3600.0, NSUB, now)["b"]  # type: ignore[arg-type]

        poll_until(lambda: bounced() == 5, 30, "the milter's watcher thread to count 5 bounces")
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
