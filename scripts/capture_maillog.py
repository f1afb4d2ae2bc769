"""Record real Postfix log lines for the outcome parser's table test.

Starts the devstack (real Postfix, the milter, Redis, the sink), makes the sink
accept, refuse (550 5.1.1, 5.1.10, 5.4.4) and defer (451) chosen recipients,
stops the sink for a while (connection refused, then postfix/error's
"delivery temporarily suspended"), lets bounces go back to the sender, makes
real SASL AUTH attempts (Cyrus sasldb: wrong passwords with PLAIN and LOGIN, an
unknown user, a sasldb smtpd cannot read, a successful login that sends), and
copies Postfix's maillog to tests/data/maillog-postfix.txt.

    .venv/bin/python scripts/capture_maillog.py [OUT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from relaywarden.devstack.smtpclient import Session
from relaywarden.devstack.stack import Stack
from tests.mail import message

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tests" / "policies" / "e2e.toml"


PASSWORD = "correct horse"


def authenticate(stack: Stack) -> None:
    """Failed and successful AUTH from XCLIENT-presented client addresses."""
    assert stack.postfix is not None
    attempts = [
        ("198.51.100.23", "alice", "wrong", "PLAIN"),
        ("198.51.100.23", "alice", "wrong again", "LOGIN"),
        ("2001:db8::7", "mallory", "guess", "PLAIN"),
    ]
    for client, user, password, mech in attempts:
        with Session("127.0.0.1", stack.smtp_port, xclient={"ADDR": client}) as s:
            print(client, mech, s.auth(user, password, mech))
    # What smtpd logs when it cannot read the sasldb (it runs as user postfix).
    stack.postfix.sasldb.chmod(0o600)
    with Session("127.0.0.1", stack.smtp_port, xclient={"ADDR": "198.51.100.24"}) as s:
        print("unreadable sasldb", s.auth("alice", PASSWORD))
    stack.postfix.sasldb.chmod(0o640)
    with Session("127.0.0.1", stack.smtp_port, xclient={"ADDR": "203.0.113.7"}) as s:
        print("good login", s.auth("alice", PASSWORD))
        print(s.send("orders@shop.example", ["buyer@example.org"], message()))


def main(out: Path) -> None:
    with Stack(POLICY, sasl_users={"alice": PASSWORD}) as stack:
        assert stack.postfix is not None
        authenticate(stack)
        sink = stack.sink
        sink.refuse("nobody@example.org")
        sink.refuse(
            "nullmx@example.org",
            reply="550 5.1.10 <{rcpt}>: Recipient address rejected: Domain has null MX",
        )
        sink.refuse("loop@example.org", reply="554 5.4.4 <{rcpt}>: Unrouteable address")
        sink.defer("later@example.org")
        # postfix/error lines: a domain routed to Postfix's error transport.
        stack.postfix.main_cf_set(
            "transport_maps", "inline:{ {gone.example=error:5.1.1 mailbox gone} }"
        )
        stack.postfix.reload()
        sends = [
            ("orders@shop.example", ["buyer@example.org"], "203.0.113.7", ""),
            ("orders@shop.example", ["nobody@example.org"], "203.0.113.7", "alice"),
            ("orders@shop.example", ["buyer@example.org", "nobody@example.org"], "203.0.113.7", ""),
            ("news@cafe.example", ["nullmx@example.org"], "198.51.100.9", ""),
            ("news@cafe.example", ["loop@example.org"], "2001:db8:42::25", "bob"),
            ("news@cafe.example", ["later@example.org"], "198.51.100.9", ""),
            ("news@cafe.example", ["someone@gone.example"], "198.51.100.9", "carol"),
        ]
        for mail_from, rcpts, client, login in sends:
            data = message(mail_from, to=rcpts[0])
            result = stack.send(mail_from, rcpts, data, client=client, login=login)
            print(result.code, result.text)
        time.sleep(4)  # the deferred one is retried (minimal_backoff_time 1s)
        sink.stop()
        for _ in range(2):
            result = stack.send("orders@shop.example", ["buyer@example.org"], message())
            print(result.code, result.text)
            time.sleep(3)
        time.sleep(2)
        # Deferred mail expires: qmgr's "status=expired, returned to sender".
        stack.postfix.main_cf_set("maximal_queue_lifetime", "2s")
        stack.postfix.main_cf_set("bounce_queue_lifetime", "2s")
        stack.postfix.reload()
        time.sleep(4)
        sink.start()  # a new port: what is still queued stays deferred; fine for the record
        out.write_text(stack.postfix.log_text())
        print(f"wrote {out}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "maillog-postfix.txt"
    )
