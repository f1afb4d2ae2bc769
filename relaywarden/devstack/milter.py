"""`relaywarden run` as a child process, started the way an operator would start it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, poll_until, wait_for_port
from relaywarden.milter import signals

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def wait_for_socket(path: Path, timeout: float, what: str) -> None:
    """Until `path` is a socket that accepts a connection."""
    import socket
    import stat

    def accepting() -> bool:
        if not (path.exists() and stat.S_ISSOCK(path.stat().st_mode)):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(path))
            except OSError:
                return False
        return True

    poll_until(accepting, timeout, what)


class MilterProcess:
    def __init__(
        self,
        policy: Path,
        redis_url: str,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        nameservers: list[str] | None = None,
        unix_socket: Path | None = None,
    ) -> None:
        self.policy = policy
        # A unix socket instead of a loopback port (its owner/group/mode from the policy).
        self.unix_socket = unix_socket
        self.redis_url = redis_url
        self.workdir = workdir
        self.port = free_port()
        self.extra_env = env or {}
        self.proc: Proc | None = None
        self.nameservers = nameservers or []

    @property
    def listen(self) -> str:
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return f"inet:{self.port}@{LOOPBACK}"

    @property
    def postfix_socket(self) -> str:
        """The same socket in Postfix's syntax, for smtpd_milters."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return f"inet:{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "milter.log"

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **self.extra_env}
        argv = [
            sys.executable,
            "-m",
            "relaywarden",
            "run",
            "--config",
            str(self.policy),
            "--listen",
            self.listen,
            "--redis-url",
            self.redis_url,
        ]
        for nameserver in self.nameservers:
            argv += ["--nameserver", nameserver]
        self.proc = Proc(argv, "relaywarden", self.log_path, env=env, cwd=PROJECT_ROOT)
        try:
            if self.unix_socket is not None:
                wait_for_socket(self.unix_socket, timeout, "relaywarden milter")
            else:
                wait_for_port(LOOPBACK, self.port, timeout, "relaywarden milter")
        except TimeoutError:
            raise TimeoutError(f"milter did not start:\n{self.proc.log_text()[-3000:]}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()

    def reload(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signals.RELOAD)  # as the shipped unit reloads

    def stop(self, timeout: float = 20.0) -> int | None:
        return self.proc.stop(timeout) if self.proc else None

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else ""
