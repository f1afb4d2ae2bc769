"""Helpers shared by the end-to-end tests: the abuse team's webhook endpoint, and
the relaywarden CLI run as a process against a running stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.stack import Stack


class Receiver:
    """The abuse team's webhook endpoint, on loopback, recording what it gets."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        received = self.notices

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/abuse"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cli(stack: Stack, *args: str) -> str:
    """`relaywarden ARGS` on the stack's policy and Redis, from the project root: its
    output, once it has exited 0."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    common = ["--config", str(stack.policy), "--redis-url", stack.redis_url]
    done = subprocess.run(
        [sys.executable, "-m", "relaywarden", *args, *common],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
