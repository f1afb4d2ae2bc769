"""`[milter] pin_cpus`: workers.pin_to_cpu keeps a process on one CPU, round robin
over the CPUs it may use, and a system that refuses leaves the milter running."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from relaywarden.milter import workers
from relaywarden.policy import PolicyError, load_policy
from relaywarden.runtime import Overrides, Runtime


def pinned_in_child(index: int, chosen: list[int] | None = None) -> tuple[int | None, set[int]]:
    """pin_to_cpu(index, chosen) in a forked child (the test process stays unpinned)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            cpu = workers.pin_to_cpu(index, chosen or ())
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


def test_a_list_chooses_the_cpus_round_robin() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = list(reversed(allowed))
    for index in range(len(chosen) + 1):
        cpu, cpus = pinned_in_child(index, chosen)
        assert cpu == chosen[index % len(chosen)]
        assert cpus == {cpu}


def test_a_cpu_the_process_may_not_use_is_named_and_left_unpinned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = os.sched_getaffinity(0)
    missing = max(before) + 1  # beyond every CPU this process may use
    with caplog.at_level(logging.WARNING, logger="relaywarden.workers"):
        assert workers.pin_to_cpu(0, [missing]) is None
    assert os.sched_getaffinity(0) == before
    assert f"[milter] pin_cpus: CPU {missing} is not one this process may run on" in caplog.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[]", "a non-empty list of CPU numbers"),
        ("[-1]", "a non-empty list of CPU numbers"),
        ("1", "valid boolean"),
        ('"yes"', "valid boolean"),
    ],
)
def test_a_bad_setting_names_the_file_and_key(tmp_path: Path, value: str, reason: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[milter]\npin_cpus = {value}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert f"{path}: milter.pin_cpus" in str(caught.value) and reason in str(caught.value)


def test_the_setting_reaches_the_milter_as_written(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[milter]\npin_cpus = [3, 1]\n")
    assert load_policy(path).milter.pin_cpus == [3, 1]
    path.write_text("[milter]\npin_cpus = false\n")
    assert load_policy(path).milter.pin_cpus is False
    assert load_policy(None).milter.pin_cpus is True


def test_a_reload_that_changes_start_only_settings_says_they_wait_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[milter]\npin_cpus = true\nmode = "enforce"\n')
    rt = Runtime.start(path, Overrides())
    with caplog.at_level(logging.WARNING, logger="relaywarden.runtime"):
        path.write_text('[milter]\npin_cpus = true\nmode = "shadow"\n')
        assert rt.reload()
        assert "restart" not in caplog.text  # mode is read per message
        path.write_text('[milter]\npin_cpus = [0]\nworkers = 2\nmode = "shadow"\n')
        assert rt.reload()
    assert "[milter] workers, [milter] pin_cpus changed: read at start only" in caplog.text
    assert rt.current.policy.milter.pin_cpus == [0]  # what the next start will use
