"""Process and port helpers shared by the devstack services.

Everything here works on loopback addresses and on processes *we* started,
identified by PID: the devstack must never disturb a system Postfix or Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now.

    The kernel picks it (bind to port 0). There is a small race until the
    service binds it, which is acceptable for tests on a private loopback.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def poll_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> None:
    """Call `condition` until it is true; raise TimeoutError naming `what` otherwise.

    All devstack waits go through here so none of them sleeps blindly or forever.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float, service: str = "service") -> None:
    """Wait until host:port accepts connections; TimeoutError names the service."""
    poll_until(lambda: port_is_open(host, port), timeout, f"{service} on {host}:{port}")


class StopsOnExit:
    """`with thing:` stops the thing on the way out, whatever happened inside."""

    def stop(self) -> object:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class ProcInfo:
    """The fields of /proc/PID/stat that the devstack needs."""

    pid: int
    name: str
    state: str  # "Z" = zombie (exited, not yet reaped)
    ppid: int
    session: int


def proc_info(pid: int) -> ProcInfo | None:
    """Read /proc/PID/stat; None if the process is gone."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name is parenthesised and may contain spaces: split around the last ')'.
    name = line.split("(", 1)[1].rsplit(")", 1)[0]
    fields = line.rsplit(")", 1)[1].split()
    return ProcInfo(pid, name, fields[0], int(fields[1]), int(fields[3]))


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    info = proc_info(pid)
    return info is not None and info.state != "Z"


def kill_pid(pid: int, sig: int) -> None:
    """Send `sig` to one PID, ignoring processes that are already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Proc(StopsOnExit):
    """A child process we started, stoppable by its PID only.

    Output goes to a log file (never a pipe: an unread pipe fills up and
    blocks the child).
    """

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "ab") if log_path else None  # noqa: SIM115
        out: IO[bytes] | int = self._log if self._log else subprocess.DEVNULL
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            # A new session keeps terminal signals (Ctrl-C in `make demo`) away
            # from the child and marks all its descendants with its session id.
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """What the process printed so far (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM this PID, wait up to `timeout`, then SIGKILL. Returns the exit status."""
        try:
            if self.popen.poll() is None:
                kill_pid(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    kill_pid(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout)
            return self.popen.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        return self
