"""A private redis-server on a free loopback port, with no persistence."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Self

import redis

from relaywarden.devstack.procs import LOOPBACK, Proc, StopsOnExit, free_port, poll_until


def _answers_ping(port: int) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer(StopsOnExit):
    """redis-server in the foreground as our child, stopped by PID.

    `--save ""` and `--appendonly no` keep it memory-only, so a restart starts
    empty and no dump file is written anywhere but `workdir`.
    """

    def __init__(self, binary: str = "redis-server", start_timeout: float = 10.0) -> None:
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(f"{binary} not found on PATH")
        self.binary = found
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.workdir: Path | None = None
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("RedisServer was never started")
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, workdir: Path) -> str:
        """Start on a free port, wait until PING answers, return the redis:// URL."""
        if self.proc is not None and self.proc.running():
            raise RuntimeError(f"RedisServer already running (pid {self.proc.pid})")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        if self.port is None:
            self.port = free_port()
        self._launch()
        return self.url

    def _argv(self) -> list[str]:
        assert self.port is not None and self.workdir is not None
        options = {
            "port": str(self.port),
            "bind": LOOPBACK,
            "save": "",  # no RDB snapshots
            "appendonly": "no",  # no AOF
            "dir": str(self.workdir),
            "daemonize": "no",  # stay our child so we can stop it by PID
            "logfile": "",  # log to stdout, which Proc sends to redis.log
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        return argv

    def _launch(self) -> None:
        assert self.workdir is not None and self.port is not None
        self.proc = Proc(self._argv(), "redis-server", log_path=self.workdir / "redis.log")
        port, proc = self.port, self.proc

        def ready() -> bool:
            if not proc.running():
                raise RuntimeError(f"redis-server exited early:\n{proc.log_text()}")
            return _answers_ping(port)

        try:
            poll_until(ready, self.start_timeout, f"redis-server PING on port {port}")
        except BaseException:
            proc.stop()
            raise

    def stop(self) -> None:
        """Stop our redis-server by PID (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self) -> str:
        """Stop and start again on the same port (data is lost: no persistence)."""
        if self.workdir is None:
            raise RuntimeError("RedisServer was never started")
        self.stop()
        self._launch()
        return self.url

    def __enter__(self) -> Self:
        return self
