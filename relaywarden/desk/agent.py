"""The relay side of the desk: file quarantined messages, apply queued actions."""

from __future__ import annotations

import contextlib
import threading

from relaywarden.desk import index
from relaywarden.desk.service import Desk
from relaywarden.runtime import Runtime


def attach(runtime: Runtime) -> threading.Event:
    """Called once by `relaywarden run`. Returns the event that stops the agent thread."""
    index.install(lambda: runtime.policy)
    stop = threading.Event()
    threading.Thread(target=_serve, args=(runtime, stop), name="desk-agent", daemon=True).start()
    return stop


def _serve(runtime: Runtime, stop: threading.Event, idle: float = 1.0) -> None:
    """Apply queued actions while `[quarantine] agent` is on, following reloads
    (a new relay name or Postfix directory applies to the next action)."""
    desk: Desk | None = None
    built_for: tuple[object, object] | None = None
    while not stop.is_set():
        policy = runtime.policy
        if not policy.quarantine.agent:
            stop.wait(idle)
            continue
        if desk is None or built_for != (policy.quarantine, policy.redis):
            desk, built_for = Desk.from_policy(policy), (policy.quarantine, policy.redis)
            with contextlib.suppress(Exception):  # Redis down: serve_one logs and retries
                desk.recover_jobs()
        desk.serve_one(stop)
