"""The daemon's life: reload on SIGUSR1, bounded stop on SIGUSR2, Redis failing
under it, unix sockets. Each test runs a private stack with its own policy."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from relaywarden.devstack.procs import free_port, poll_until
from relaywarden.devstack.smtpclient import Session
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RCPT = ["buyer@example.org"]
BLOCK_SENDER = (
    '[[blocks]]\nsubject = "sender:later@shop.example"\nreason = "blocked after reload"\n'
)


def test_sighup_reloads_a_good_policy_and_refuses_a_bad_one(private_stack) -> None:  # type: ignore[no-untyped-def]
    stack = private_stack("")
    assert stack.milter is not None
    send = lambda: stack.fate(stack.send("later@shop.example", RCPT, message("later@shop.example")))  # noqa: E731
    assert send().fate == "delivered"

    stack.policy.write_text(BLOCK_SENDER)
    stack.milter.reload()
    poll_until(lambda: "policy reloaded" in stack.milter.log_text(), 10, "the reload")  # type: ignore[union-attr]
    assert send().fate == "rejected"

    stack.policy.write_text(BLOCK_SENDER + "[scoring]\nreject = 'lots'\n")
    stack.milter.reload()
    poll_until(lambda: "policy reload refused" in stack.milter.log_text(), 10, "the refusal")  # type: ignore[union-attr]
    assert "scoring.reject" in stack.milter.log_text()  # the log names the key
    outcome = send()  # the old (blocking) policy is still in force
    assert outcome.fate == "rejected" and "blocked after reload" in outcome.result.text
    assert stack.milter.running()


def test_a_stop_finishes_the_open_transaction_then_exits_0(private_stack) -> None:  # type: ignore[no-untyped-def]
    """SIGUSR2, the unit's KillSignal: libmilter never takes it for itself. (SIGTERM
    runs the same handler when it reaches us; libmilter's signal thread may take it
    first, which test_service covers.)"""
    stack = private_stack('[milter]\nshutdown_grace = "20s"\n')
    assert stack.milter is not None and stack.milter.proc is not None
    with Session("127.0.0.1", stack.smtp_port, xclient={"ADDR": "203.0.113.7"}) as session:
        assert session.smtp is not None
        code, _ = session.smtp.mail("orders@shop.example")
        assert code == 250
        os.kill(stack.milter.proc.pid, signal.SIGUSR2)
        poll_until(lambda: "stopping" in stack.milter.log_text(), 10, "the stop")  # type: ignore[union-attr]
        # A transaction that starts now is turned away with 421: retried, not lost.
        late = stack.send("late@shop.example", RCPT, message("late@shop.example"))
        assert (late.code, late.enhanced) == (421, "4.3.2")
        code, _ = session.smtp.rcpt("buyer@example.org")
        assert code == 250
        code, reply = session.smtp.data(message(subject="finished during shutdown"))
        assert code == 250, reply
    assert stack.milter.proc.popen.wait(15) == 0
    assert stack.sink.wait_for(lambda m: m.subject == "finished during shutdown", timeout=30)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize(
    ("mode", "fate", "code"), [("tempfail", "tempfailed", 451), ("open", "delivered", 250)]
)
def test_redis_down_applies_fail_mode_visibly(
    private_stack, mode: str, fate: str, code: int
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    stack = private_stack(f'[redis]\non_error = "{mode}"\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    assert stack.redis is not None and stack.milter is not None
    stack.redis.stop()
    outcome = stack.fate(stack.send("orders@shop.example", RCPT, message()))
    assert (outcome.fate, outcome.result.code) == (fate, code)
    if mode == "tempfail":
        assert outcome.result.enhanced == "4.3.0"
    assert "dependency failure" in stack.milter.log_text()
    assert _metric(port, "relaywarden_dependency_errors_total") >= 1


def test_redis_restart_is_survived(private_stack) -> None:  # type: ignore[no-untyped-def]
    stack = private_stack("")
    assert stack.redis is not None
    assert stack.fate(stack.send("orders@shop.example", RCPT, message())).fate == "delivered"
    stack.redis.restart()
    assert stack.fate(stack.send("orders@shop.example", RCPT, message())).fate == "delivered"


def test_unix_socket_is_created_0660(tmp_path: Path) -> None:
    sock = Path("/tmp") / f"rw-test-{os.getpid()}-{free_port()}.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaywarden",
            "run",
            "--listen",
            f"unix:{sock}",
            "--redis-url",
            "redis://127.0.0.1:1/0",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        poll_until(sock.exists, 15, "the unix socket")
        poll_until(lambda: stat.S_IMODE(sock.stat().st_mode) == 0o660, 5, "mode 0660")
        assert stat.S_ISSOCK(sock.stat().st_mode)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        sock.unlink(missing_ok=True)
