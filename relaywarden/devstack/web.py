"""`relaywarden web` as a child process on a free loopback port (browser test, demo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import LOOPBACK, Proc, StopsOnExit, free_port, wait_for_port


class WebProcess(StopsOnExit):
    def __init__(self, policy: Path, redis_url: str, workdir: Path) -> None:
        self.policy = policy
        self.redis_url = redis_url
        self.log_path = workdir / "web.log"
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> WebProcess:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        argv = [
            sys.executable, "-m", "relaywarden", "web",
            "--listen", f"{LOOPBACK}:{self.port}",
            "--config", str(self.policy),
            "--redis-url", self.redis_url,
        ]  # fmt: skip
        # Own session: Ctrl-C in `relaywarden demo --web` is the demo's to handle.
        self.proc = Proc(
            argv, "relaywarden-web", self.log_path, env=env, cwd=PROJECT_ROOT, new_session=True
        )
        try:
            wait_for_port(LOOPBACK, self.port, timeout, "relaywarden web")
        except TimeoutError:
            raise TimeoutError(f"web did not start:\n{self.proc.log_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> WebProcess:
        return self.start()
