"""CPU time of processes from /proc, for the benches: a figure that a busy shared
machine stretches in time but does not inflate (unlike wall-clock rates)."""

from __future__ import annotations

import os
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return line.rsplit(")", 1)[1].split()  # the name may hold spaces and ')'


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process and its reaped children, in seconds."""
    return sum(process_cpu_split(pid))


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) seconds of one process and its reaped children."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + cutime) / HZ, (stime + cstime) / HZ


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and every live descendant (reaped ones count via cutime)."""
    return sum(tree_cpu_split(root))


def tree_cpu_split(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    user = system = 0.0
    stack = [root]
    while stack:
        pid = stack.pop()
        u, s = process_cpu_split(pid)
        user, system = user + u, system + s
        stack.extend(children.get(pid, ()))
    return user, system
