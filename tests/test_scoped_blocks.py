"""An automatic `sender:` block lands on the customer whose mail earned it: the real
adapter (pymilter's TestCtx) on a real redis-server, escalation carried out where
the milter queues it. A person's `sender:` block stays relay-wide."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest

from relaywarden import audit, blocking
from relaywarden.checks import limits as limits_check
from relaywarden.identity import Sender
from relaywarden.limits import escalation
from relaywarden.limits.model import scopes_for
from relaywarden.limits.status import subject_status
from relaywarden.runtime import Runtime
from relaywarden.subjects import Subject, parse_subject
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

VPS_A = "203.0.113.61"  # customer A's VPS: compromised, sends as the victim
VPS_B = "198.51.100.61"  # customer B: legitimately uses the same address
VICTIM = "victim@shared.example"
POLICY = """
[plans.shared]
messages = ["100/1h"]

[plans.shared.sender]
messages = ["2/1h"]

[[customers]]
id = "cust-a"
plan = "shared"
networks = ["203.0.113.0/24"]

[[customers]]
id = "cust-b"
plan = "shared"
networks = ["198.51.100.0/24"]

[checks.sender]
enabled = false

[limits.escalation]
hits = 3
# The hits here come within one sub-window: count each.
distinct_hits = false
# 550 (not the default 451) so a blocked reply is told apart from a rate-limit deferral.
action = "reject"

[limits.inventory]
refresh = "1h"
"""
T0 = 1_800_000_000.0
SCOPED = f"customer:cust-a/sender:{VICTIM}"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY) as rt:
        monkeypatch.setattr(limits_check, "_TEST_CLOCK", repr(T0))
        yield rt


@pytest.fixture
def escalate_inline(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Carry escalation jobs out where the milter queues them; the notices they give."""
    notices: list[dict[str, Any]] = []

    def run(job: escalation.Job) -> None:
        notice = escalation.escalate(job)
        if notice is not None:
            notices.append(notice)

    monkeypatch.setattr(escalation.ESCALATOR, "submit", run)
    return notices


def send(client: str, mail_from: str = VICTIM) -> str:
    """One message through the adapter: "250", or the reply code and text it met."""
    ctx = open_ctx(client)
    try:
        if ctx._envfrom(f"<{mail_from}>") != Milter.CONTINUE:
            return f"{ctx._reply[0]} {ctx._reply[2]}"
        if ctx._envrcpt("<someone@example.org>") != Milter.CONTINUE:
            ctx._abort()
            return f"{ctx._reply[0]} {ctx._reply[2]}"
        status = deliver(ctx, message(mail_from, "hello"))
        return "250" if status == Milter.ACCEPT else f"{ctx._reply[0]} {ctx._reply[2]}"
    finally:
        ctx._close()


def earn_block(notices: list[dict[str, Any]]) -> list[str]:
    """Customer A's VPS sends as the victim until it earns an automatic block."""
    replies = []
    for _ in range(10):
        replies.append(send(VPS_A))
        if notices:
            break
    assert notices, replies
    return replies


def test_one_customer_cannot_get_another_customers_sender_blocked(
    runtime: Runtime, escalate_inline: list[dict[str, Any]]
) -> None:
    replies = earn_block(escalate_inline)
    assert replies[:2] == ["250", "250"]  # the plan's 2 per hour, then hits
    assert escalate_inline[0]["subject"] == SCOPED
    assert f"relaywarden unblock {SCOPED}" in escalate_inline[0]["unblock"]

    # B sending as the same address is accepted (its own sender budget is untouched).
    assert send(VPS_B) == "250"
    assert send(VPS_B) == "250"
    # A stays blocked as that sender, and only as that sender.
    blocked = send(VPS_A)
    assert blocked.startswith("550") and "Sender blocked" in blocked
    assert send(VPS_A, "orders@a-shop.example") == "250"

    # The block says whose mail it covers: listed, audited, shown by status.
    [record] = runtime.store.list_blocks()
    assert record.subject == SCOPED and record.set_by == "relaywarden"
    assert parse_subject(record.subject) == Subject(
        "sender", VICTIM, within=Subject("customer", "cust-a")
    )
    entries = audit.page(runtime.store, None).entries
    assert any(e.action == "block" and e.target == SCOPED for e in entries)
    status = subject_status(
        runtime.store, runtime.policy, parse_subject(SCOPED), runtime.inventory, repr(T0)
    )
    assert status["customer"] == "cust-a" and status["blocks"][0]["subject"] == SCOPED
    assert status["limit_hits"]["count"] >= 3


def test_lifting_the_scoped_block_clears_its_hits_and_is_audited(
    runtime: Runtime, escalate_inline: list[dict[str, Any]]
) -> None:
    earn_block(escalate_inline)
    subject = parse_subject(SCOPED)
    assert blocking.unblock(runtime.store, subject, actor="tester", reason="cleaned up")
    assert runtime.store.list_blocks() == []
    entries = audit.page(runtime.store, None).entries
    assert any(e.action == "unblock" and e.target == SCOPED for e in entries)
    # Unblocked: still over the sender's plan (a rate-limit deferral, not the block),
    # and that one deferral does not re-block at once (the hits went with the block).
    again = send(VPS_A)
    assert again.startswith("451") and "Rate limit" in again
    assert len(escalate_inline) == 1


def test_a_persons_sender_block_stays_relay_wide(runtime: Runtime) -> None:
    blocking.block(
        runtime.store,
        parse_subject(f"sender:{VICTIM}"),
        actor="analyst",
        reason="phish",
        duration=3600,
    )
    assert send(VPS_A).startswith("550")
    assert send(VPS_B).startswith("550")


def test_escalation_is_queued_after_the_pipeline_that_counts_its_hit(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root cause of the flaky e2e automatic block: the job was queued before the
    end-of-message pipeline ran, so its re-check could read the hits one short."""
    seen: list[int] = []
    scope = next(s for s in escalation_scopes(runtime) if s.subject == Subject("sender", VICTIM))

    def submit(job: escalation.Job) -> None:
        seen.append(escalation.current_hits(job.store, job.key, 3600, repr(T0)))

    monkeypatch.setattr(escalation.ESCALATOR, "submit", submit)
    for _ in range(5):
        send(VPS_A)
    assert seen and seen[0] == runtime.policy.limits.escalation.hits, seen
    assert escalation.current_hits(runtime.store, scope.key, 3600, repr(T0)) == 3


def escalation_scopes(runtime: Runtime) -> list[Any]:
    customer = runtime.inventory.customers["cust-a"]
    who = Sender(vps=VPS_A, customer=customer.id, plan=customer.plan)
    return scopes_for(runtime.policy, who, VICTIM)
