"""Escalation that never bounces an honest backlog: the real adapter (pymilter's
TestCtx) on a real redis-server, the scripts on an injected clock, escalation
run where the milter would queue it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import Milter
import pytest

from relaywarden import audit, blocking
from relaywarden.checks import limits as limits_check
from relaywarden.devstack.procs import poll_until
from relaywarden.limits import escalation
from relaywarden.limits.status import reset_keys, scope_of, sender_for
from relaywarden.policy import load_policy
from relaywarden.runtime import Runtime
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx
from tests.redis_backend import fresh_client

VPS = "203.0.113.60"
HONEST = "198.51.100.60"  # plan "plain": 20 messages an hour, nothing else
SUBJECT = parse_subject(f"vps:{VPS}")
POLICY = """
[plans.hourly]
messages = ["20/1h"]
recipients = ["2/1m"]

[plans.plain]
messages = ["20/1h"]

[[customers]]
id = "cust-plain"
plan = "plain"
networks = ["198.51.100.0/24"]
domains = ["shop.example"]

[[customers]]
id = "cust-backlog"
plan = "hourly"
networks = ["203.0.113.0/24"]
domains = ["shop.example"]

[checks.sender]
enabled = false

[limits.inventory]
refresh = "1h"
"""
T0 = 1_800_000_000.0


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY) as rt:
        yield rt


def at(monkeypatch: pytest.MonkeyPatch, epoch: float) -> None:
    monkeypatch.setattr(limits_check, "_TEST_CLOCK", repr(epoch))


def send(n: int, rcpts: int = 1, client: str = VPS) -> tuple[str, ...]:
    """One message through the adapter: the reply codes it met ("250" if accepted)."""
    ctx = open_ctx(client)
    codes: list[str] = []
    if ctx._envfrom("<orders@shop.example>") != Milter.CONTINUE:
        codes.append(ctx._reply[0])
        ctx._close()
        return tuple(codes)
    accepted = 0
    for r in range(rcpts):
        if ctx._envrcpt(f"<r{n}-{r}@example.org>") == Milter.CONTINUE:
            accepted += 1
        else:
            codes.append(ctx._reply[0])
    if not accepted:
        ctx._abort()
        ctx._close()
        return tuple(codes)
    status = deliver(ctx, message(subject=f"backlog {n}"))
    codes.append("250" if status == Milter.ACCEPT else ctx._reply[0])
    ctx._close()
    return tuple(codes)


def hits(rt: Runtime) -> int:
    policy = rt.policy
    scope = scope_of(SUBJECT, policy, sender_for(SUBJECT, policy, rt.inventory))
    return escalation.current_hits(
        rt.store, scope.key, policy.limits.escalation.period, limits_check._TEST_CLOCK
    )


def flush_backlog(
    monkeypatch: pytest.MonkeyPatch, retries: list[float], count: int = 35
) -> tuple[list[str], list[str]]:
    """An MTA on a `20/1h` plan flushing `count` queued messages at T0, retrying what
    was deferred at each offset in `retries`: (every reply met, final fate per message)."""
    replies: list[str] = []
    fate = ["queued"] * count
    for when in [0.0, *retries]:
        at(monkeypatch, T0 + when)
        for n in range(count):
            if fate[n] == "queued":
                codes = send(n, client=HONEST)
                replies.extend(codes)
                fate[n] = "delivered" if codes[-1] == "250" else "queued"
    return replies, fate


def test_an_honest_35_message_backlog_on_a_20_per_hour_plan_is_never_bounced(
    runtime: Runtime, escalate_inline: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postfix's own retry schedule: minimal_backoff_time 300 s, doubling, 4000 s at most.
    replies, fate = flush_backlog(monkeypatch, [300, 900, 2100, 4100, 8100])
    assert not [r for r in replies if r.startswith("5")]
    assert set(replies) == {"250", "451"}
    assert fate == ["delivered"] * 35  # all of it, once the hour let it through
    assert not escalate_inline  # one episode of retries: never an automatic block


def test_even_a_client_retrying_every_minute_only_ever_meets_451(
    runtime: Runtime, escalate_inline: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    replies, _ = flush_backlog(monkeypatch, [60.0 * n for n in range(1, 80)])
    assert not [r for r in replies if r.startswith("5")]
    # At most one hit per 6-minute sub-window: an hour of retries is needed for
    # the 10 hits of an automatic block, and that block defers (451), not bounces.
    assert len(escalate_inline) == 1 and escalate_inline[0]["action"] == "tempfail"


def test_a_hit_counts_once_per_sub_window_and_recipient_refusals_count(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, T0)
    assert send(0, rcpts=3) == ("451", "250")  # the 3rd recipient: over 2/1m
    assert hits(runtime) == 1  # counted by the milter, not only by the tests
    for n in range(1, 6):  # retries: refused at MAIL FROM (no recipient left this minute)
        assert send(n, rcpts=1) == ("451",)
    assert hits(runtime) == 1  # same sub-window: the same episode
    at(monkeypatch, T0 + 400)  # next sub-window (3600 / 10 = 360 s)
    send(9, rcpts=3)
    assert hits(runtime) == 2


def _earn_block(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> escalation.Job:
    """Ten sub-windows with a hit each: the VPS has earned an automatic block."""
    jobs: list[escalation.Job] = []
    monkeypatch.setattr(escalation.ESCALATOR, "submit", jobs.append)
    for n in range(10):
        at(monkeypatch, T0 + 360 * n)
        send(100 + n, rcpts=3)
    assert hits(rt) == 10 and jobs
    return jobs[-1]


def test_unblock_clears_the_hits_and_a_queued_escalation_does_not_reblock(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _earn_block(runtime, monkeypatch)
    notice = escalation.escalate(job)
    assert notice is not None and notice["action"] == "tempfail"
    assert send(200) == ("451",)  # the automatic block defers: 451 4.7.1
    assert blocking.unblock(runtime.store, SUBJECT, actor="tester", reason="cleaned up")
    assert hits(runtime) == 0
    assert escalation.escalate(job) is None  # queued before the unblock: re-checked, dropped
    assert send(201, rcpts=3)[0] == "451"  # one new refusal ...
    assert escalation.escalate(job) is None  # ... is one hit, not a block at 4x


def test_reset_before_the_escalation_runs_means_no_block(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _earn_block(runtime, monkeypatch)
    policy = runtime.policy
    reset_keys(
        runtime.store, scope_of(SUBJECT, policy, sender_for(SUBJECT, policy, runtime.inventory))
    )
    assert escalation.escalate(job) is None
    assert not runtime.store.blocks_for([SUBJECT])


def test_two_relays_seeing_the_same_hit_make_one_block_one_audit_one_notice(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _earn_block(runtime, monkeypatch)
    relays = [
        escalation.Job(
            RedisStore(
                fresh_client(runtime.store.client),
                runtime.store.keys.prefix,
            ),
            job.policy,
            job.subject,
            job.key,
            job.evidence,
            job.clock,
        )
        for _ in range(2)
    ]
    gate = threading.Barrier(2)
    notices: list[dict[str, Any] | None] = []

    def relay(j: escalation.Job) -> None:
        gate.wait()
        notices.append(escalation.escalate(j))

    threads = [threading.Thread(target=relay, args=(j,)) for j in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len([n for n in notices if n is not None]) == 1
    blocks = [e for e in audit.read(runtime.store) if e.action == "block"]
    assert len(blocks) == 1 and blocks[0].target == str(SUBJECT)


def test_a_hanging_webhook_never_delays_the_next_block(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(60)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        policy = load_policy_with_webhook(runtime, f"http://127.0.0.1:{server.server_port}/")
        first = _earn_block(runtime, monkeypatch)
        esc = escalation.Escalator()
        esc.submit(job_with(first, policy))
        blocked: Callable[[], bool] = lambda: bool(runtime.store.blocks_for([SUBJECT]))  # noqa: E731
        poll_until(blocked, 30, "the first automatic block")
        poll_until(lambda: esc.notices.unfinished_tasks == 1, 30, "the hanging notice")
        other = parse_subject("user:second")
        esc.submit(escalation.Job(runtime.store, policy, other, first.key, {}, first.clock))
        poll_until(lambda: bool(runtime.store.blocks_for([other])), 30, "the second block")
        assert not release.is_set()  # the first notice still hangs: blocks did not wait
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def load_policy_with_webhook(rt: Runtime, url: str) -> Any:
    assert rt.policy_path is not None
    path = Path(rt.policy_path)
    path.write_text(POLICY + f'\n[limits.escalation.webhook]\nurl = "{url}"\nattempts = 1\n')
    return load_policy(path)


def job_with(job: escalation.Job, policy: Any) -> escalation.Job:
    return escalation.Job(job.store, policy, job.subject, job.key, job.evidence, job.clock)


def test_the_relay_itself_is_exempt_from_its_limits(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, T0)
    ctx = open_ctx("127.0.0.1")
    for n in range(25):  # over 20/1h and 2 recipients a minute
        assert ctx._envfrom("<relaywarden@shop.example>") == Milter.CONTINUE
        assert ctx._envrcpt("<abuse@example.org>") == Milter.CONTINUE
        assert ctx._envrcpt(f"<team{n}@example.org>") == Milter.CONTINUE
        assert deliver(ctx, message("relaywarden@shop.example", f"notice {n}")) == Milter.ACCEPT
    ctx._close()
