"""Shadow mode through real Postfix: a message the policy would refuse is
delivered, and its decision record says what enforcing would have done."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from relaywarden.store import RedisStore
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RCPT = ["buyer@example.org"]
POLICY = """
[milter]
mode = "shadow"

[[blocks]]
subject = "sender:spam@shop.example"
action = "reject"
reason = "known spammer"

[[blocks]]
subject = "sender:bulk@shop.example"
action = "quarantine"
reason = "bulk under review"
"""


def test_shadow_mode_delivers_and_records_would_reject(private_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = private_stack(POLICY)
    refused = stack.fate(stack.send("spam@shop.example", RCPT, message("spam@shop.example")))
    assert refused.fate == "delivered", refused.reply
    held = stack.fate(stack.send("bulk@shop.example", RCPT, message("bulk@shop.example")))
    assert held.fate == "delivered", held.reply  # not put on hold either
    clean = stack.fate(stack.send("orders@shop.example", RCPT, message()))
    assert clean.fate == "delivered"

    store = RedisStore(redis.Redis.from_url(stack.redis_url), "rw")
    events = store.recent_events(50)
    spam = [e for e in events if e.get("sender") == "spam@shop.example"]
    # The MAIL FROM record and the final one both say what enforcing would do.
    assert {e["stage"] for e in spam} == {"mail", "eom"}
    for event in spam:
        assert event["action"] == "accept" and event["would_action"] == "reject"
        assert event["mode"] == "shadow" and event["would_reply"].startswith("550 5.7.1")
    bulk = [e for e in events if e.get("sender") == "bulk@shop.example"]
    assert [e["would_action"] for e in bulk if e["stage"] == "eom"] == ["quarantine"]
    assert all("would_action" not in e for e in events if e.get("sender") == "orders@shop.example")
    # Accepted, so nothing was filed as held.
    assert not store.client.exists("rw:quarantine")

    status = subprocess.run(
        [sys.executable, "-m", "relaywarden", "status", "sender:spam@shop.example",
         "--config", str(stack.policy), "--redis-url", stack.redis_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "accept (shadow: would reject)" in status.stdout

    # The abuse team's desk shows the same on the sender's status page.
    from fastapi.testclient import TestClient

    from tests.desk import desk_policy
    from tests.test_web import login, make_app

    app = make_app(stack, desk_policy(stack, tmp_path / "desk.toml"))
    with TestClient(app) as client:
        login(client, "victor")
        page = client.get("/status", params={"subject": "sender:spam@shop.example"})
    assert page.status_code == 200
    assert 'accept <span class="shadow">(shadow: would reject)</span>' in page.text


def test_replay_of_the_stream_shows_what_dropping_a_block_changes(private_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    stack = private_stack(POLICY)
    assert stack.fate(stack.send("spam@shop.example", RCPT, message("spam@shop.example"))).fate == (
        "delivered"
    )
    assert stack.fate(stack.send("orders@shop.example", RCPT, message())).fate == "delivered"
    # The policy about to be enforced no longer blocks spam@ (and is not shadow).
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(POLICY.split("[[blocks]]")[0].replace('mode = "shadow"', "") + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "relaywarden", "replay", "stream", "--json",
         "--config", str(relaxed), "--redis-url", stack.redis_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    transitions = {(t["from"], t["to"]): t["count"] for t in report["transitions"]}
    # spam@'s two records (MAIL FROM and end of message) would now be accepted.
    assert transitions[("reject", "accept")] == 2 and report["changed"] == 2
    assert transitions[("accept", "accept")] >= 1
