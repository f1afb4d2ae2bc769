"""`relaywarden demo --web`: the demo ends with the desk up, showing its held message."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from relaywarden.demo import DEMO_LOGIN
from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import Proc, poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
URL = re.compile(r"desk: (http://127\.0\.0\.1:\d+)/")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def test_demo_web_serves_the_held_message_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [sys.executable, "-m", "relaywarden", "demo", "--web"]
    proc = Proc(argv, "demo", tmp_path / "demo.log", env=env, cwd=PROJECT_ROOT)
    try:
        poll_until(lambda: URL.search(proc.log_text()) is not None, 180, "the desk's URL", 0.2)
        match = URL.search(proc.log_text())
        assert match
        with httpx.Client(base_url=match.group(1), timeout=30) as client:
            token = CSRF.search(client.get("/login").text)
            assert token
            user, password = DEMO_LOGIN
            client.post(
                "/login", data={"username": user, "password": password, "csrf": token.group(1)}
            )
            listing = client.get("/")
            assert listing.status_code == 200
            assert "bulk sender held for review" in listing.text
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.popen.wait(60) == 0
        assert "All demo processes stopped." in proc.log_text()
    finally:
        proc.stop()
