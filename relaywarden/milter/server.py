"""Run the milter: libmilter in a worker thread, signals in the main thread.

libmilter blocks SIGHUP/SIGTERM/SIGINT in the threads it starts and handles them
itself (SIGHUP means "restart the listener" there). Running it in a secondary
thread leaves the main thread the only one with those signals unblocked, so the
kernel delivers them here and we decide: SIGHUP reloads the policy, SIGTERM
stops accepting and waits a bounded time for open connections.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time
from pathlib import Path

import Milter
import milter as libmilter  # pymilter's C module, for smfi_stop

from relaywarden import metrics, wideblocks
from relaywarden.desk import agent
from relaywarden.milter import workers
from relaywarden.milter.adapter import TRANSACTIONS, RelayWardenMilter
from relaywarden.outcomes import service as outcomes
from relaywarden.runtime import Runtime
from relaywarden.trace import record as trace_record

log = logging.getLogger("relaywarden.server")


def _unix_path(listen: str) -> Path | None:
    for prefix in ("unix:", "local:"):
        if listen.startswith(prefix):
            return Path(listen[len(prefix) :])
    return None


def _serve(runtime: Runtime, errors: list[BaseException]) -> None:
    policy = runtime.policy
    try:
        Milter.runmilter(policy.milter.name, policy.milter.listen, int(policy.milter.io_timeout))
    except BaseException as exc:  # reported by the main thread, which owns the exit code
        errors.append(exc)


def _fix_socket_mode(path: Path, mode: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            path.chmod(mode)
            return
        time.sleep(0.01)


def run(runtime: Runtime, factory: type[RelayWardenMilter] = RelayWardenMilter) -> int:
    """Serve until SIGTERM. `factory` lets a benchmark run a variant of the adapter."""
    policy = runtime.policy
    factory = factory.for_listen(policy.milter.listen)
    factory.runtime = runtime
    Milter.factory = factory
    # ADDHDRS/CHGHDRS: the trace header is stamped at end of message, a
    # customer's header of the same name removed first.
    Milter.set_flags(Milter.QUARANTINE | Milter.SETSYMLIST | Milter.ADDHDRS | Milter.CHGHDRS)
    if not workers.in_worker() and policy.milter.worker_count() > 1:
        # The parent: opens the socket, forks workers that each run the rest of this.
        return workers.supervise(runtime, lambda worker_runtime: run(worker_runtime, factory))
    trace_record.attach(policy.trace.retention)
    # Runtime network:/domain: blocks, re-read every [limits.inventory] refresh.
    wideblocks.Refresher(
        lambda: runtime.store, lambda: runtime.policy.limits.inventory.refresh
    ).start()
    if policy.trace.signing_key is None:
        log.warning("no [[trace.keys]] in the policy: messages are not stamped with a trace token")
    agent.attach(runtime)  # quarantine index hook; queued desk actions if enabled
    outcomes.attach(runtime)  # queue id -> identity, login blocks; the log watcher if enabled
    if policy.metrics.listen:
        metrics.serve(policy.metrics.listen)

    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())

    unix = _unix_path(policy.milter.listen)
    mode = int(policy.milter.socket_mode, 8)
    old_umask = os.umask(0o777 & ~mode) if unix else None
    errors: list[BaseException] = []
    worker = threading.Thread(target=_serve, args=(runtime, errors), name="libmilter", daemon=True)
    worker.start()
    if unix is not None and old_umask is not None:
        _fix_socket_mode(unix, mode, time.monotonic() + 5)
        os.umask(old_umask)
    log.info("listening on %s", policy.milter.listen)

    while not stop.is_set() and worker.is_alive():
        stop.wait(0.2)
        if reload.is_set():
            reload.clear()
            ok = runtime.reload()
            metrics.POLICY_RELOADS.labels(result="ok" if ok else "refused").inc()
    if errors:
        log.error("milter stopped: %s", errors[0])
        return 1
    return _shutdown(runtime, worker)


def _shutdown(runtime: Runtime, worker: threading.Thread) -> int:
    grace = runtime.policy.milter.shutdown_grace
    log.info("stopping: new transactions get 421; waiting up to %.0fs for open ones", grace)
    TRANSACTIONS.draining.set()
    deadline = time.monotonic() + grace
    while TRANSACTIONS.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    left = TRANSACTIONS.in_flight
    if left:
        log.warning("exiting with %d transaction(s) still open after %.0fs", left, grace)
    if not workers.in_worker():
        # A worker leaves the shared socket open for its siblings (libmilter's stop
        # would close it and unlink a unix socket's path); its exit ends the thread.
        libmilter.stop()
        worker.join(timeout=2)
    log.info("stopped")
    return 0
