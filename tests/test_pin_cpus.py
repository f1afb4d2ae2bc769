"""`[milter] pin_cpus`: workers.pin_to_cpu keeps a process on one CPU, round robin
over the CPUs it may use, and a system that refuses leaves the milter running."""

from __future__ import annotations

import json
import logging
import os

import pytest

from relaywarden.milter import workers


def pinned_in_child(index: int) -> tuple[int | None, set[int]]:
    """pin_to_cpu(index) in a forked child (the test process stays unpinned)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            cpu = workers.pin_to_cpu(index)
            os.write(write, json.dumps([cpu, sorted(os.sched_getaffinity(0))]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    cpu, cpus = json.loads(text)
    return cpu, set(cpus)


def test_each_index_gets_one_cpu_round_robin() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    for index in range(len(allowed) + 1):
        cpu, cpus = pinned_in_child(index)
        assert cpu == allowed[index % len(allowed)]
        assert cpus == {cpu}


def test_a_refusal_is_logged_and_leaves_the_process_unpinned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    before = os.sched_getaffinity(0)
    with caplog.at_level(logging.WARNING, logger="relaywarden.workers"):
        assert workers.pin_to_cpu(0) is None
    assert os.sched_getaffinity(0) == before
    assert "runs unpinned" in caplog.text
