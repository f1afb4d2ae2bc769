"""Brute-forced SASL logins end to end: real Postfix with real SASL AUTH (Cyrus,
a sasldb of its own), XCLIENT presenting the client addresses, the milter as a
process, real redis-server, and `relaywarden watch --once` reading smtpd's own
"SASL ... authentication failed" lines from Postfix's maillog."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from relaywarden.devstack.smtpclient import Session
from relaywarden.devstack.stack import Stack
from tests.mail import message
from tests.test_e2e_outcomes import watch_once

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
LOGIN = "alice@relay.test"  # Cyrus stores and reports the login with its realm
ATTACKER = "198.51.100.66"
OFFICE = "203.0.113.20"

POLICY = f"""
[redis]
on_error = "tempfail"

[quarantine]
relay_name = "relay-e2e"

[plans.default]
messages = ["100000/1m"]

[[customers]]
id = "cust-42"
networks = ["{OFFICE}/32"]
sasl_users = ["{LOGIN}"]
domains = ["shop.example"]

[outcomes]
enabled = true
start_at = "start"

[outcomes.auth_failures]
min_count = 5
action = "reject"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("sasl") / "policy.toml"
    policy.write_text(POLICY)
    running = Stack(policy, sasl_users={"alice": PASSWORD}).start()
    yield running
    running.stop()


def session(stack: Stack, client: str) -> Session:
    return Session("127.0.0.1", stack.smtp_port, xclient={"ADDR": client}).open()


def decision(stack: Stack, queue_id: str) -> dict[str, object]:
    assert stack.milter is not None
    for line in stack.milter.log_text().splitlines():
        if line.startswith("{") and queue_id in line:
            record: dict[str, object] = json.loads(line)
            if record.get("event") == "decision":
                return record
    raise AssertionError(f"no decision record for {queue_id}")


def test_auth_surge_from_one_address_is_brute_force_and_a_typo_is_not(stack: Stack) -> None:
    assert stack.postfix is not None
    # The attacker sprays guesses at several logins, one connection each.
    for n, user in enumerate(["admin", "info", "test", "office", "sales", "web"]):
        with session(stack, ATTACKER) as s:
            assert s.auth(user, f"guess{n}", "PLAIN" if n % 2 else "LOGIN").code == 535
    # Alice mistypes once, then logs in and sends.
    with session(stack, OFFICE) as s:
        assert s.auth("alice", "correct hrose battery").code == 535
        assert s.auth("alice", PASSWORD).code == 235
        first = s.send("orders@shop.example", ["buyer@example.org"], message())
    assert first.accepted, first.text
    assert first.queue_id is not None
    # The milter saw the real SASL login ({auth_authen}), not an XCLIENT stand-in.
    assert decision(stack, first.queue_id)["sasl_user"] == LOGIN
    log = stack.postfix.wait_log(f"[{OFFICE}]: SASL PLAIN authentication failed")
    assert log.count(f"[{ATTACKER}]: SASL") == 6

    counts = watch_once(stack)
    assert counts["auth_failures"] == 7 and counts["unknown_lines"] == 0

    # The attacker's next MAIL FROM is refused per policy, saying why.
    result = stack.send("x@shop.example", ["buyer@example.org"], message(), client=ATTACKER)
    assert (result.stage, result.code) == ("mail", 550), result
    assert "failed logins" in result.text
    # Alice, one typo in the window, sends on from her office with her login.
    with session(stack, OFFICE) as s:
        assert s.auth("alice", PASSWORD).code == 235
        again = s.send("orders@shop.example", ["buyer@example.org"], message())
    assert again.accepted, again.text
    assert again.queue_id is not None
    record = decision(stack, again.queue_id)
    assert record["sasl_user"] == LOGIN
    assert not any(
        f["name"] == "auth-failures"  # type: ignore[index]
        for f in record["findings"]  # type: ignore[attr-defined]
    )
