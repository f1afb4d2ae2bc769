"""A unique-recipient limit under interleaving: many transactions of one VPS open at
once, writing to a small pool of recipients (so most are repeats), through the
real adapter (pymilter's TestCtx) on a real redis-server, the clock moving between
rounds. What must hold: the recipients accepted in any window are never more
distinct ones than the limit, and a recipient counted in the window (not about to
leave it) is never refused."""

from __future__ import annotations

import random
from collections.abc import Iterator

import Milter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from Milter.testctx import TestCtx as MilterCtx

from relaywarden.checks import limits as limits_check
from relaywarden.limits.model import NSUB
from relaywarden.runtime import Runtime
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

LIMIT = 5
WINDOW = 60
POOL = [f"p{n}@example.org" for n in range(9)]
POLICY = f"""
[plans.default]
messages = ["1000/1m"]
unique_recipients = ["{LIMIT}/1m"]

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.escalation]
enabled = false

[limits.inventory]
refresh = "1h"
"""
VPS = "203.0.113.90"
START = 1_800_000_000


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Runtime, pytest.MonkeyPatch]]:
    """One redis-server and runtime for every example (each flushes the database)."""
    mp = pytest.MonkeyPatch()
    try:
        with adapter_runtime(tmp_path_factory.mktemp("unique"), mp, POLICY) as rt:
            yield rt, mp
    finally:
        mp.undo()


one_tx = st.tuples(
    st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4),
    st.sampled_from(["eom", "eom", "eom", "abort"]),
)
rounds = st.lists(
    st.tuples(st.integers(0, 40), st.lists(one_tx, min_size=1, max_size=8)),
    min_size=1,
    max_size=8,
)


def run_round(
    txs: list[tuple[list[int], str]], rng: random.Random
) -> tuple[list[set[str]], list[str]]:
    """Every transaction's callbacks in an order drawn from `rng`, all open at once:
    (the recipients of each accepted message, every recipient refused)."""
    ctxs: dict[int, MilterCtx] = {}
    steps = {n: ["mail", *[POOL[i] for i in rcpts], end] for n, (rcpts, end) in enumerate(txs)}
    taken: dict[int, set[str]] = {n: set() for n in steps}
    accepted: list[set[str]] = []
    refused: list[str] = []
    while steps:
        n = rng.choice(list(steps))
        op = steps[n].pop(0)
        if op == "mail":
            ctxs[n] = open_ctx(VPS)
            assert ctxs[n]._envfrom("<orders@shop.example>") == Milter.CONTINUE
        elif op in ("eom", "abort"):
            if op == "eom" and taken[n]:
                assert deliver(ctxs[n], message(subject=f"tx {n}")) == Milter.ACCEPT
                accepted.append(taken[n])
            else:
                ctxs[n]._abort()
            ctxs[n]._close()
        elif ctxs[n]._envrcpt(f"<{op}>") == Milter.CONTINUE:
            taken[n].add(op)
        else:
            assert ctxs[n]._reply[0] == "451", ctxs[n]._reply
            refused.append(op)
        if not steps[n]:
            del steps[n]
    return accepted, refused


@pytest.mark.timeout(600)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=rounds, rng=st.randoms(use_true_random=False))
def test_distinct_recipients_in_any_window_never_exceed_the_limit(
    runtime: tuple[Runtime, pytest.MonkeyPatch],
    schedule: list[tuple[int, list[tuple[list[int], str]]]],
    rng: random.Random,
) -> None:
    rt, mp = runtime
    rt.store.client.flushdb()
    now = START
    log: list[tuple[int, set[str]]] = []  # (time, recipients) of each accepted message
    for dt, txs in schedule:
        now += dt
        mp.setattr(limits_check, "_TEST_CLOCK", repr(float(now)))
        # Counted before this round and not about to leave the window: free to write to.
        edge = now - WINDOW + WINDOW // NSUB
        known = set().union(*[r for t, r in log if t >= edge])
        accepted, refused = run_round(txs, rng)
        log += [(now, r) for r in accepted]
        assert not known & set(refused), (known, refused)
        distinct = set().union(*[r for t, r in log if t >= edge])
        assert len(distinct) <= LIMIT, (now, sorted(distinct))
