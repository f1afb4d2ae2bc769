"""The Postfix log parser, table-tested on real Postfix 3.7.11 lines.

tests/data/maillog-postfix.txt was recorded from the devstack by
`scripts/capture_maillog.py` (the sink accepting, refusing with 550 5.1.1,
5.1.10 and 554 5.4.4, deferring with 451, then gone; the error transport;
expiry; real SASL AUTH against a Cyrus sasldb, failing and succeeding). The
table picks lines from it by content, so a re-recorded file works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaywarden.outcomes.parse import AuthFailure, Delivery, Ignored, Unknown, parse

DATA = Path(__file__).parent / "data" / "maillog-postfix.txt"
LINES = DATA.read_text().splitlines(keepends=True)


def first(*needles: str) -> str:
    for line in LINES:
        if all(n in line for n in needles):
            return line
    raise AssertionError(f"no recorded line holds {needles}")


TABLE = [
    # (what the line holds, expected status, expected dsn)
    (("postfix/smtp[", "status=sent"), "delivered", "2.0.0"),
    (("postfix/smtp[", "dsn=5.1.1, status=bounced"), "bounced", "5.1.1"),
    (("postfix/smtp[", "dsn=5.1.10, status=bounced"), "bounced", "5.1.10"),
    (("postfix/smtp[", "dsn=5.4.4, status=bounced"), "bounced", "5.4.4"),
    (("postfix/smtp[", "451 4.2.0", "status=deferred"), "deferred", "4.2.0"),
    (("postfix/smtp[", "Connection refused)", "status=deferred"), "deferred", "4.4.1"),
    (("postfix/error[", "delivery temporarily suspended"), "deferred", "4.4.1"),
    (("postfix/smtp[", "conn_use=", "status=sent"), "delivered", "2.0.0"),
    (("postfix/qmgr[", "status=expired, returned to sender"), "expired", ""),
]


@pytest.mark.parametrize(("needles", "status", "dsn"), TABLE)
def test_recorded_delivery_lines(needles: tuple[str, ...], status: str, dsn: str) -> None:
    line = first(*needles)
    event = parse(line)
    assert isinstance(event, Delivery), line
    assert (event.status, event.dsn) == (status, dsn)
    assert event.queue_id in line and len(event.queue_id) >= 10  # enable_long_queue_ids


IGNORED = [
    ("postfix/smtpd[", ": client=unknown[", "sasl_username=alice"),
    ("postfix/smtpd[", "connect from unknown"),
    ("postfix/smtpd[", "NOQUEUE: reject: RCPT"),
    ("postfix/cleanup[", "message-id=<"),
    ("postfix/qmgr[", "(queue active)"),
    ("postfix/qmgr[", ": removed"),
    ("postfix/bounce[", "sender non-delivery notification"),
    ("postfix/smtp[", ": connect to 127.0.0.1"),
    ("postfix/master[", "daemon started"),
]


@pytest.mark.parametrize("needles", IGNORED)
def test_recorded_lines_about_other_things(needles: tuple[str, ...]) -> None:
    assert isinstance(parse(first(*needles)), Ignored)


def test_every_recorded_line_is_understood() -> None:
    events = [parse(line) for line in LINES]
    assert not [line for line, e in zip(LINES, events, strict=True) if isinstance(e, Unknown)]
    deliveries = [e for e in events if isinstance(e, Delivery)]
    # Every delivery agent status line of the recording, and each expiry, is an event.
    expected = sum(1 for line in LINES if ", status=" in line)
    assert len(deliveries) == expected > 40


# Recorded from the devstack's Postfix with real SASL (Cyrus, sasldb): the client
# address presented by XCLIENT ADDR= before AUTH, the login with its realm.
AUTH = [
    # (what the line holds, address, login)
    (
        ("SASL PLAIN authentication failed: authentication failure",),
        "198.51.100.23",
        "alice@relay.test",
    ),
    (
        ("SASL LOGIN authentication failed: authentication failure",),
        "198.51.100.23",
        "alice@relay.test",
    ),
    (("[2001:db8::7]: SASL PLAIN authentication failed",), "2001:db8::7", "mallory@relay.test"),
    # smtpd could not read the sasldb: still a failed attempt from that client.
    (("SASL PLAIN authentication failed: generic failure",), "198.51.100.24", "alice@relay.test"),
]


@pytest.mark.parametrize(("needles", "address", "login"), AUTH)
def test_recorded_auth_failures(needles: tuple[str, ...], address: str, login: str) -> None:
    assert parse(first("postfix/smtpd[", *needles)) == AuthFailure(address, login)


def test_every_recorded_auth_failure_is_counted() -> None:
    failed = [line for line in LINES if "authentication failed" in line]
    assert len(failed) == 4
    assert all(isinstance(parse(line), AuthFailure) for line in failed)
    # The lines around them are about the same attempts, not more failures.
    for needles in (
        ("warning: SASL authentication failure: Password verification failed",),
        ("warning: SASL authentication problem: unable to open Berkeley db",),
        ("client=unknown[203.0.113.7], sasl_method=PLAIN, sasl_username=alice@relay.test",),
    ):
        assert isinstance(parse(first(*needles)), Ignored)


# Not recorded: another host name and a submission service, which the devstack
# does not run; the format is the recorded one ("%s: SASL %s authentication failed: %s").
OTHER_AUTH = [
    (
        "Nov 29 13:40:02 relay postfix/submission/smtpd[2211]: warning: "
        "host.example[2001:db8::7]: SASL PLAIN authentication failed: ",
        "2001:db8::7",
        "",
    ),
]


@pytest.mark.parametrize(("line", "address", "login"), OTHER_AUTH)
def test_auth_failures(line: str, address: str, login: str) -> None:
    assert parse(line) == AuthFailure(address, login)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "Nov 29 13:40:01 relay sshd[1]: Accepted publickey",
        "Nov 29 13:40:01 relay postfix/smtp[1]: ABCDEF0123: to=<x>, status=",
        "Nov 29 13:40:01 relay postfix/smtp[1]: something new in Postfix 3.9",
    ],
)
def test_other_lines_are_not_deliveries(line: str) -> None:
    assert not isinstance(parse(line), Delivery | AuthFailure)


def test_unknown_postfix_line_is_unknown() -> None:
    assert isinstance(parse("Nov 29 13:40:01 relay postfix/smtp[1]: something new"), Unknown)


@given(st.text(max_size=300))
def test_never_raises(text: str) -> None:
    parse(text)
    parse("Nov 29 13:40:01 relay postfix/smtp[1]: " + text)
