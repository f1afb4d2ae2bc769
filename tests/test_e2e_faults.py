"""Faults through real Postfix: a Redis stalled mid-traffic (SIGSTOP, then
SIGCONT) behind the circuit breaker, reloads while mail flows, and the milter's
memory over a bounded run."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request

import pytest

from relaywarden.devstack.procs import free_port, poll_until
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RCPT = ["buyer@example.org"]
# Many messages from one VPS: rate limits are not what these tests are about.
NO_LIMITS = "[limits]\nenabled = false\n"


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("relaywarden_breaker") and " " in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_stalled_redis_fails_fast_behind_the_breaker_and_recovers(private_stack) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    # No limits: the reservations of the stalled admissions (executed once Redis
    # resumes) would otherwise hold this VPS's allowance until their lease ends.
    stack = private_stack(
        NO_LIMITS + f'[redis]\ntimeout = "300ms"\nbreaker_interval = "1s"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    assert stack.redis is not None and stack.redis.proc is not None
    pid = stack.redis.proc.pid
    assert stack.send("orders@shop.example", RCPT, message()).accepted
    os.kill(pid, signal.SIGSTOP)
    try:
        during = [stack.send("orders@shop.example", RCPT, message()) for _ in range(8)]
    finally:
        os.kill(pid, signal.SIGCONT)
    # Nothing unchecked left and nothing lost: each got a retryable 451 4.3.0.
    assert all(r.code == 451 and "4.3.0" in r.text for r in during), [r.text for r in during]
    counts = scrape(port)
    assert counts['relaywarden_breaker_opened_total{service="redis"}'] >= 1
    assert counts['relaywarden_breaker_rejected_total{service="redis"}'] >= 1  # failed fast
    # After the interval a probe finds Redis back: mail flows again.
    poll_until(lambda: stack.send("orders@shop.example", RCPT, message()).accepted, 30, "recovery")
    assert scrape(port)['relaywarden_breaker_state{service="redis"}'] == 0
    assert "circuit open" in stack.milter.log_text()


def test_reloads_while_mail_flows_lose_and_refuse_nothing(private_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = private_stack(NO_LIMITS + "[scoring]\nreject = 10.0\n")
    assert stack.milter is not None
    results: list[bool] = []

    def traffic() -> None:
        for n in range(30):
            r = stack.send("orders@shop.example", RCPT, message(subject=f"order {n}"))
            results.append(r.accepted)

    sender = threading.Thread(target=traffic)
    sender.start()
    reloads = 0
    while sender.is_alive() and reloads < 8:
        stack.policy.write_text(NO_LIMITS + f"[scoring]\nreject = {10.0 + reloads % 2}\n")
        stack.milter.reload()
        reloads += 1
        poll_until(
            lambda done=reloads: stack.milter.log_text().count("policy reloaded") >= done,  # type: ignore[misc]
            10,
            "the reload",
        )
    sender.join(120)
    assert reloads >= 2 and results == [True] * 30
    arrived = stack.sink.wait_for(30, timeout=60)
    assert sorted(m.subject for m in arrived) == sorted(f"order {n}" for n in range(30))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_flat_over_a_bounded_run(private_stack) -> None:  # type: ignore[no-untyped-def]
    stack = private_stack(NO_LIMITS)
    assert stack.milter is not None and stack.milter.proc is not None
    pid = stack.milter.proc.pid
    for _ in range(60):  # warm: imports, caches, pools
        assert stack.send("orders@shop.example", RCPT, message()).accepted
    warm = rss_kb(pid)
    for _ in range(240):
        assert stack.send("orders@shop.example", RCPT, message()).accepted
    grown = rss_kb(pid) - warm
    # 240 more messages: a leak of even 40 KB a message would show as 9 MB.
    assert grown < 8 * 1024, f"RSS grew {grown} KB over 240 messages (from {warm} KB)"
