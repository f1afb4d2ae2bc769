"""`[milter] workers = 2` through real Postfix: mail flows through both worker
processes, a reload (SIGUSR1, as the unit sends) reaches every one of them, a
killed worker is replaced, and SIGTERM to the parent stops them all with exit
status 0 (the parent passes both on as signals libmilter never takes)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from relaywarden.devstack.procs import all_pids, pid_alive, poll_until, proc_info
from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RCPT = ["buyer@example.org"]
TWO_WORKERS = '[milter]\nworkers = 2\nshutdown_grace = "5s"\n'
BLOCK = '[[blocks]]\nsubject = "sender:later@shop.example"\nreason = "blocked after reload"\n'


def workers_of(parent: int) -> set[int]:
    infos = (proc_info(pid) for pid in all_pids())
    return {i.pid for i in infos if i and i.ppid == parent and i.state != "Z"}


def cpus_of(tid: int, pid: int | None = None) -> set[int]:
    """The CPUs a process (or one of its threads) may run on; empty for a thread
    that ended meanwhile (libmilter's session threads come and go)."""
    path = f"/proc/{pid}/task/{tid}/status" if pid else f"/proc/{tid}/status"
    try:
        with open(path) as f:
            line = next(x for x in f if x.startswith("Cpus_allowed_list:"))
    except (FileNotFoundError, ProcessLookupError):
        return set()
    cpus: set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def send(stack: Stack, sender: str) -> str:
    return stack.fate(stack.send(sender, RCPT, message(sender))).fate


def decided_by(stack: Stack) -> set[int]:
    """PIDs of the worker processes that logged a decision."""
    text = stack.milter.log_text() if stack.milter else ""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {r["pid"] for r in records if r.get("event") == "decision"}


def test_two_workers_share_the_socket_reload_are_replaced_and_stop(private_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = private_stack(TWO_WORKERS)
    assert stack.milter is not None and stack.milter.proc is not None
    parent = stack.milter.proc.pid
    poll_until(lambda: len(workers_of(parent)) == 2, 20, "two worker processes")
    first = workers_of(parent)

    # Mail flows; within a bounded number of connections both workers take some.
    for n in range(40):
        assert send(stack, f"n{n}@shop.example") == "delivered"
        if decided_by(stack) == first:
            break
    assert decided_by(stack) == first

    # pin_cpus (the default): each worker on one CPU of its own, the parent not;
    # libmilter's threads, started after the pin, inherit it.
    allowed = os.sched_getaffinity(0)
    pinned = {pid: cpus_of(pid) for pid in first}
    assert all(len(cpus) == 1 and cpus <= allowed for cpus in pinned.values())
    if len(allowed) > 1:
        assert len(set.union(*pinned.values())) == 2
    assert cpus_of(parent) == allowed
    for pid in first:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert sum(cpus_of(t, pid) == pinned[pid] for t in tasks) >= 2  # main + libmilter

    # A reload of the parent reaches every worker: each logs its own reload.
    stack.policy.write_text(TWO_WORKERS + BLOCK)
    stack.milter.reload()
    poll_until(
        lambda: stack.milter.log_text().count("policy reloaded") == 3,  # type: ignore[union-attr]
        20,
        "the parent and both workers to reload",
    )
    for _ in range(6):  # whichever worker takes the connection has the new policy
        assert send(stack, "later@shop.example") == "rejected"

    # A worker that dies is replaced, with the reloaded policy; mail still flows.
    victim = sorted(first)[0]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:  # one look at the process table, not two moments
        now = workers_of(parent)
        return len(now) == 2 and victim not in now

    poll_until(replaced, 20, "a replacement worker")
    replacement = (workers_of(parent) - first).pop()
    assert "exited" in stack.milter.log_text() and "starting a new one" in stack.milter.log_text()
    assert send(stack, "later@shop.example") == "rejected"
    for n in range(40):
        if replacement in decided_by(stack):
            break
        assert send(stack, f"m{n}@shop.example") == "delivered"
    assert replacement in decided_by(stack)

    # SIGTERM: the parent passes it on, every worker drains and exits, then the parent, 0.
    everyone = workers_of(parent)
    assert stack.milter.stop(30) == 0
    poll_until(lambda: not any(pid_alive(p) for p in everyone), 10, "the workers to exit")
    assert "stopped" in stack.milter.log_text()
