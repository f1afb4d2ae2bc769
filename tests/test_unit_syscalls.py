"""The milter's systemd unit filters system calls: what the milter needs must
survive the filter, or the kernel kills it (SIGSYS, systemd's default action).
The filter is evaluated as systemd does (first line an allow-list, later `~`
lines remove, later plain lines add), with the groups expanded by systemd-analyze."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "dist" / "systemd" / "relaywarden.service"


@functools.cache
def expand(name: str) -> frozenset[str]:
    if not name.startswith("@"):
        return frozenset({name})
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:  # the first line is the group's own name
        entry = line.strip()
        if entry and not entry.startswith("#"):
            names |= expand(entry)
    return frozenset(names)


def allowed_by(unit: Path) -> frozenset[str]:
    lines = [
        line.split("=", 1)[1].strip()
        for line in unit.read_text().splitlines()
        if line.startswith("SystemCallFilter=")
    ]
    assert lines and not lines[0].startswith("~"), "the first line is an allow-list"
    allowed: set[str] = set()
    for value in lines:
        deny = value.startswith("~")
        names = set().union(*(expand(n) for n in value.removeprefix("~").split()))
        allowed = allowed - names if deny else allowed | names
    return frozenset(allowed)


def test_the_milter_may_pin_itself_to_a_cpu() -> None:
    # Denied by the unit's `~@resources` unless named again.
    assert "sched_setaffinity" in expand("@resources")
    allowed = allowed_by(UNIT)
    assert {"sched_setaffinity", "sched_getaffinity"} <= allowed


def test_the_rest_of_resources_and_privileged_stays_denied() -> None:
    allowed = allowed_by(UNIT)
    for name in ("setrlimit", "setpriority", "sched_setscheduler", "mbind", "reboot", "mount"):
        assert name not in allowed
