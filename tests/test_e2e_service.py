"""Operating it for real: Postfix reaching the milter over a unix socket as
`[milter] socket_group` sets it up (and not without it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from relaywarden.devstack.procs import free_port
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RCPT = ["buyer@example.org"]


def socket_path() -> Path:
    # /tmp itself is traversable by Postfix's user; the milter creates the directory.
    return Path("/tmp") / f"rw-e2e-{os.getpid()}-{free_port()}" / "milter.sock"


@pytest.mark.parametrize(
    ("milter_section", "fate"),
    [
        ('[milter]\nsocket_group = "postfix"\n', "delivered"),
        # Root's own socket, root:root 0660 in a 0750 directory: smtpd (user
        # postfix) cannot open it, milter_default_action = tempfail applies.
        ("", "tempfailed"),
    ],
)
def test_postfix_opens_the_unix_socket_only_with_its_group(
    private_stack, milter_section: str, fate: str
) -> None:  # type: ignore[no-untyped-def]
    sock = socket_path()
    try:
        stack = private_stack(milter_section, milter_socket=sock)
        outcome = stack.fate(stack.send("orders@shop.example", RCPT, message()))
        assert outcome.fate == fate, outcome.reply
    finally:
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_held_message_count_is_exported(private_stack) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    port = free_port()
    stack = private_stack(
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[[blocks]]\nsubject = "sender:promo@shop.example"\naction = "quarantine"\n'
    )
    held = stack.fate(stack.send("promo@shop.example", RCPT, message("promo@shop.example")))
    assert held.fate == "held"
    # The first scrape samples the quarantine index (then cached for 30 s).
    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "relaywarden_held_messages 1.0" in text

    # `quarantine show` prints the evidence as text, not as a Python dict.
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "relaywarden", "quarantine", "show", held.result.queue_id,
         "--config", str(stack.policy), "--redis-url", stack.redis_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    findings = shown.stdout.split("findings\n", 1)[1].split("status\n", 1)[0]
    assert "blocks/" in findings and "subject: sender:promo@shop.example" in findings
    assert "{'" not in shown.stdout
