"""`relaywarden demo`: the whole stack on loopback and a short traffic mix through it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from pathlib import Path

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.stack import Outcome, Stack

DEMO_POLICY = PROJECT_ROOT / "policies" / "demo.toml"


def compose(mail_from: str, subject: str, to: str = "customer@example.org") -> bytes:
    domain = mail_from.rsplit("@", 1)[-1] or "shop.example"
    return (
        f"From: <{mail_from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain=domain)}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{subject}.\r\n"
    ).encode()


@dataclass
class Case:
    label: str
    mail_from: str
    client: str
    login: str = ""


CASES = [
    Case("clean order confirmation", "orders@shop.example", "203.0.113.7", "alice"),
    Case("invalid sender address", "orders.@shop.example", "203.0.113.7", "alice"),
    Case("VPS on the static block list", "orders@shop.example", "192.0.2.66"),
    Case("bulk sender held for review", "promo@shop.example", "203.0.113.8", "bob"),
    Case("suspended SASL account", "info@cafe.example", "2001:db8:42::25", "suspended"),
    Case("customer spoofing a DMARC p=reject brand", "service@paypal.com", "203.0.113.9", "carol"),
]


def run_demo(
    policy: Path = DEMO_POLICY,
    echo: Callable[[str], None] = print,
    cases: list[Case] = CASES,
    web: bool = False,
) -> list[Outcome]:
    echo("Starting redis-server, the sink, RelayWarden and a private Postfix on loopback…")
    outcomes = []
    with Stack(policy) as stack:
        assert stack.postfix is not None
        echo(f"Postfix listens on 127.0.0.1:{stack.smtp_port}; a sink plays the internet.\n")
        for case in cases:
            result = stack.send(
                case.mail_from,
                ["customer@example.org"],
                compose(case.mail_from, case.label),
                client=case.client,
                login=case.login,
            )
            outcomes.append(stack.fate(result))
        echo(table(cases, outcomes))
        echo(burst_table(run_burst(stack)))
        if web:
            serve_desk(stack, policy, echo)
        else:
            echo(WEB_HINT)
    echo("\nAll demo processes stopped.")
    return outcomes


def table(cases: list[Case], outcomes: list[Outcome]) -> str:
    rows = [("case", "client", "result", "SMTP reply")]
    for case, outcome in zip(cases, outcomes, strict=True):
        rows.append((case.label, case.client, outcome.fate, outcome.reply))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 10)
    return "\n".join(lines)


DEMO_LOGIN = ("demo", "demo-password")
WEB_HINT = (
    "\nThe held message waits in the abuse team's desk: run `make demo-web` "
    "to keep the stack up and review it in a browser (login demo / demo-password)."
)


def serve_desk(stack: Stack, policy: Path, echo: Callable[[str], None]) -> None:
    """Serve the desk over the demo stack until Ctrl-C (or SIGTERM)."""
    import signal
    import threading

    from relaywarden.devstack.web import WebProcess
    from relaywarden.web.auth import hash_password

    assert stack.postfix is not None
    desk_policy = stack.workdir / "desk.toml"
    desk_policy.write_text(
        policy.read_text()
        + f'\n[quarantine]\npostfix_config_dir = "{stack.postfix.config_dir}"\n'
        + f'\n[[web.users]]\nname = "{DEMO_LOGIN[0]}"\nrole = "operator"\n'
        + f'password_hash = "{hash_password(DEMO_LOGIN[1])}"\n'
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with WebProcess(desk_policy, stack.redis_url, stack.workdir) as web:
            echo(f"\nThe abuse team's desk: {web.url}/  (login {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]})")
            echo("Release the held message there and it reaches the sink. Ctrl-C stops everything.")
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# A burst: one VPS of plan "small" (5 messages a minute) blasts while two other
# customers' VPSes go on sending, interleaved, in the same minute.
BLASTER = Case("VPS blasting a list", "news@cafe.example", "198.51.100.50")
NEIGHBOURS = [
    Case("another customer's shop", "orders@shop.example", "198.51.100.51"),
    Case("a bakery's receipts", "receipts@bakery.example", "198.51.100.52"),
]
# Five rounds: the neighbours send exactly their limit, the blaster four times it
# (its repeated hits then earn it an automatic block: the last ones are rejected).
BURST_ROUNDS = 5
BLASTS_PER_ROUND = 4


def run_burst(stack: Stack, rounds: int = BURST_ROUNDS) -> dict[str, Counter[str]]:
    """Each round the blaster sends four messages and each neighbour one; tally fates."""
    tally: dict[str, Counter[str]] = {c.label: Counter() for c in [BLASTER, *NEIGHBOURS]}
    for n in range(rounds):
        for case in [BLASTER] * BLASTS_PER_ROUND + NEIGHBOURS:
            rcpt = f"list{n}@example.org" if case is BLASTER else "customer@example.org"
            result = stack.send(
                case.mail_from,
                [rcpt],
                compose(case.mail_from, case.label, rcpt),
                client=case.client,
            )
            tally[case.label][stack.fate(result).fate] += 1
    return tally


def burst_table(tally: dict[str, Counter[str]]) -> str:
    lines = ["", "A burst from one VPS, while others keep sending (limit: 5 messages a minute):"]
    for label, fates in tally.items():
        summary = ", ".join(f"{count} {fate}" for fate, count in sorted(fates.items()))
        lines.append(f"  {label:<26} {summary}")
    return "\n".join(lines)
