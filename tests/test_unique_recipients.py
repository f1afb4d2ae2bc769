"""Unique-recipient and unique-domain limits count distinct recipients: writing again
to someone already counted in the window uses up nothing. The real adapter
(pymilter's TestCtx) on a real redis-server, the scripts on an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx

from relaywarden.checks import limits as limits_check
from relaywarden.limits.status import reset_keys, scope_of, sender_for, subject_status
from relaywarden.runtime import Runtime
from relaywarden.subjects import parse_subject
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

VPS = "203.0.113.81"
POLICY = """
[plans.few]
messages = ["1000/1h"]
unique_recipients = ["5/1h"]
unique_domains = ["3/1h"]

[[customers]]
id = "cust-few"
plan = "few"
networks = ["203.0.113.0/24"]
domains = ["shop.example"]

[checks.sender]
enabled = false

[limits.inventory]
refresh = "1h"
"""
T0 = 1_800_000_000.0
SAME = ["a@one.example", "b@one.example", "c@two.example"]


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY) as rt:
        at(monkeypatch, T0)
        yield rt


def at(monkeypatch: pytest.MonkeyPatch, epoch: float) -> None:
    monkeypatch.setattr(limits_check, "_TEST_CLOCK", repr(epoch))


def opened(rcpts: list[str]) -> tuple[MilterCtx, list[str]]:
    """MAIL FROM and each RCPT: the open transaction and each recipient's reply code."""
    ctx = open_ctx(VPS)
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE, ctx._reply
    codes = []
    for rcpt in rcpts:
        ok = ctx._envrcpt(f"<{rcpt}>") == Milter.CONTINUE
        codes.append("250" if ok else ctx._reply[0])
    return ctx, codes


def finish(ctx: MilterCtx, codes: list[str]) -> str:
    if "250" not in codes:
        ctx._abort()
        ctx._close()
        return "none"
    status = deliver(ctx, message("orders@shop.example", "note"))
    ctx._close()
    return "250" if status == Milter.ACCEPT else ctx._reply[0]


def send(rcpts: list[str]) -> list[str]:
    """One message: each recipient's reply code."""
    ctx, codes = opened(rcpts)
    assert finish(ctx, codes) in ("250", "none")
    return codes


def test_writing_again_to_counted_recipients_uses_up_nothing(runtime: Runtime) -> None:
    for _ in range(20):
        assert send(SAME) == ["250"] * 3
    assert send(["d@one.example"]) == ["250"]  # the 4th distinct recipient
    assert send(["e@one.example"]) == ["250"]  # the 5th
    assert send(["f@one.example"]) == ["451"]  # the 6th: the limit
    # Still: anyone already counted, in any order, with the refused one between.
    assert send(["e@one.example", "g@one.example", "a@one.example"]) == ["250", "451", "250"]
    # `relaywarden status` reads the same exact count.
    report = subject_status(
        runtime.store, runtime.policy, parse_subject(f"vps:{VPS}"), runtime.inventory, repr(T0)
    )
    unique = next(w for w in report["windows"] if w["unit"] == "unique_recipients")
    assert (unique["count"], unique["limit"], unique["left"]) == (5, 5, 0)


def test_a_new_window_counts_afresh(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    assert send([f"r{n}@one.example" for n in range(6)]) == ["250"] * 5 + ["451"]
    at(monkeypatch, T0 + 3601)
    assert send(["r0@one.example", "new@one.example"]) == ["250", "250"]


def test_concurrent_transactions_cannot_pass_the_distinct_limit_together(
    runtime: Runtime,
) -> None:
    assert send([*SAME, "d@one.example"]) == ["250"] * 4  # one distinct left
    first, first_codes = opened(["x@one.example"])
    second, second_codes = opened(["y@one.example", "a@one.example"])
    # The first holds the one place left; the second may still write to anyone counted.
    assert first_codes == ["250"] and second_codes == ["451", "250"]
    assert finish(first, first_codes) == "250" and finish(second, second_codes) == "250"
    assert send(["y@one.example"]) == ["451"]
    assert send([*SAME, "x@one.example", "d@one.example"]) == ["250"] * 5


def test_unique_domains_count_distinct_domains(runtime: Runtime) -> None:
    assert send(["a@one.example", "b@two.example"]) == ["250", "250"]
    assert send(["q@three.example"]) == ["250"]  # the 3rd distinct domain: the limit
    # A 4th domain is refused; a new recipient at a counted domain is not.
    assert send(["a@four.example", "a@two.example"]) == ["451", "250"]
    assert send(["c@one.example", "b@two.example"]) == ["250", "250"]


def test_a_recipient_about_to_leave_the_window_costs_like_a_new_one(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free only while it stays counted through the transaction: one counted within
    the window's last tenth could leave it before the end of the message and be
    counted again beside a full window."""
    assert send([f"r{n}@one.example" for n in range(5)]) == ["250"] * 5
    at(monkeypatch, T0 + 3000)
    assert send(["r0@one.example"]) == ["250"]  # counted again, at T0 + 3000
    at(monkeypatch, T0 + 3600 - 3)  # r1..r4, counted 3597 s ago, are about to leave
    assert send(["r1@one.example", "r0@one.example"]) == ["451", "250"]


def test_reset_clears_the_counted_recipients(runtime: Runtime) -> None:
    assert send([f"r{n}@one.example" for n in range(6)]) == ["250"] * 5 + ["451"]
    subject = parse_subject(f"vps:{VPS}")
    scope = scope_of(
        subject, runtime.policy, sender_for(subject, runtime.policy, runtime.inventory)
    )
    reset_keys(runtime.store, scope)
    assert send(["r5@one.example"]) == ["250"]


def test_two_windows_on_one_unit_refuse_early_never_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = POLICY.replace('unique_recipients = ["5/1h"]', 'unique_recipients = ["3/1m", "5/1h"]')
    with adapter_runtime(tmp_path, monkeypatch, policy):
        at(monkeypatch, T0)
        assert send(SAME) == ["250"] * 3
        assert send(["a@one.example"]) == ["250"]  # counted in both windows: free
        assert send(["d@one.example"]) == ["451"]  # the minute is full
        at(monkeypatch, T0 + 70)
        assert send(["d@one.example", "e@one.example"]) == ["250", "250"]  # 5 in the hour
        assert send(["f@one.example"]) == ["451"]  # the hour is full
        assert send(["d@one.example"]) == ["250"]  # counted in both: free
        # Counted in the hour but not in this minute: the hour's reservation is 0, so
        # it is refused though the minute has room (early, never over).
        assert send(["a@one.example"]) == ["451"]
