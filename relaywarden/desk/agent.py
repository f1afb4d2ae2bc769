"""The relay side of the desk: file quarantined messages, apply queued actions."""

from __future__ import annotations

import threading

from relaywarden.desk import index
from relaywarden.desk.service import Desk
from relaywarden.runtime import Runtime


def attach(runtime: Runtime) -> threading.Event:
    """Called once by `relaywarden run`. Returns the event that stops the agent thread."""
    index.install(lambda: runtime.policy)
    stop = threading.Event()
    if runtime.policy.quarantine.agent:
        desk = Desk.from_policy(runtime.policy, runtime.policy.redis.url)
        threading.Thread(
            target=desk.serve_jobs, args=(stop,), name="desk-agent", daemon=True
        ).start()
    return stop
