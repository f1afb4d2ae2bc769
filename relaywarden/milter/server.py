"""Run the milter: libmilter in a worker thread, signals in the main thread.

libmilter starts a signal thread of its own that waits (sigwait) for SIGHUP,
SIGTERM and SIGINT and stops the milter on the first of them, closing the
listening socket (and unlinking a unix socket's path). Running libmilter in a
secondary thread leaves the main thread with those signals unblocked, and the
kernel usually hands them to it; usually, not always: under CPU load libmilter's
thread took 3 SIGHUPs in 12. So SIGUSR1 (reload) and SIGUSR2 (stop, as SIGTERM),
which libmilter never waits for, are the signals the shipped unit and the
worker supervisor send. SIGHUP still reloads and SIGTERM still stops when they
reach us; when libmilter takes one instead and stops, the milter says so and
exits 1, so that a service manager restarts it rather than leave the relay
without its filter.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import Milter
import milter as libmilter  # pymilter's C module, for smfi_stop

from relaywarden import engine, metrics, wideblocks
from relaywarden.daemon import banner, gauges, notify, schema, sockets
from relaywarden.desk import agent
from relaywarden.milter import signals, workers
from relaywarden.milter.adapter import TRANSACTIONS, RelayWardenMilter
from relaywarden.outcomes import service as outcomes
from relaywarden.runtime import Runtime
from relaywarden.trace import record as trace_record

log = logging.getLogger("relaywarden.server")


def _serve(runtime: Runtime, errors: list[BaseException]) -> None:
    policy = runtime.policy
    try:
        Milter.runmilter(policy.milter.name, policy.milter.listen, int(policy.milter.io_timeout))
    except BaseException as exc:  # reported by the main thread, which owns the exit code
        errors.append(exc)


def announce(runtime: Runtime) -> None:
    """The start-up line, then one warning per check the policy leaves off."""
    policy = runtime.policy
    line = banner.startup_line(policy, runtime.policy_path)
    fields = banner.startup_fields(policy, runtime.policy_path)
    log.info(line, extra={"fields": {"event": "start", "message": line, **fields}})
    for warning in banner.warnings(policy, runtime.policy_path):
        log.warning("%s", warning)


def prepare(runtime: Runtime) -> None:
    """Everything that can fail before serving, each failure one CannotListen line:
    the milter and metrics addresses taken, a socket owner or group unknown."""
    milter = runtime.policy.milter
    sockets.probe(milter.listen, "milter")
    listen = runtime.policy.metrics.listen
    if listen:
        sockets.probe_hostport(listen, f"metrics address {listen}")
    unix = sockets.unix_path(milter.listen)
    if unix is not None:
        problems = sockets.check_names(milter.socket_owner, milter.socket_group)
        if problems:
            raise sockets.CannotListen(f"cannot listen on {milter.listen}: {'; '.join(problems)}")
        try:
            sockets.prepare_dir(
                unix, int(milter.socket_dir_mode, 8), milter.socket_owner, milter.socket_group
            )
        except OSError as exc:
            raise sockets.CannotListen(
                f"cannot listen on {milter.listen}: cannot create {unix.parent}: {exc.strerror}"
            ) from None


def _start_checks(runtime: Runtime) -> int:
    """The start-up line, the Redis layout, the addresses: 0, or the exit status."""
    announce(runtime)
    try:
        schema.check(runtime.store)
    except schema.SchemaMismatch as exc:
        log.error("%s", exc)
        return schema.EXIT_SCHEMA
    try:
        prepare(runtime)
    except sockets.CannotListen as exc:
        log.error("%s", exc)
        return sockets.EXIT_CANNOT_LISTEN
    return 0


def run(runtime: Runtime, factory: type[RelayWardenMilter] = RelayWardenMilter) -> int:
    """Serve until SIGTERM. `factory` lets a benchmark run a variant of the adapter."""
    policy = runtime.policy
    if not workers.in_worker():  # the parent (or the only process) checks once
        code = _start_checks(runtime)
        if code:
            return code
    factory = factory.for_listen(policy.milter.listen)
    factory.runtime = runtime
    Milter.factory = factory
    # ADDHDRS/CHGHDRS: the trace header is stamped at end of message, a
    # customer's header of the same name removed first.
    Milter.set_flags(Milter.QUARANTINE | Milter.SETSYMLIST | Milter.ADDHDRS | Milter.CHGHDRS)
    if not workers.in_worker() and policy.milter.worker_count() > 1:
        # The parent: opens the socket, forks workers that each run the rest of this.
        return workers.supervise(runtime, lambda worker_runtime: run(worker_runtime, factory))
    if policy.milter.pin_cpus is not False:  # before any thread starts: they inherit it
        cpus = policy.milter.pin_cpus if isinstance(policy.milter.pin_cpus, list) else ()
        cpu = workers.pin_to_cpu(workers.INDEX or 0, cpus)
        if cpu is not None:
            log.info("serving on CPU %d ([milter] pin_cpus)", cpu)
    trace_record.attach(policy.trace.retention)
    # Runtime network:/domain: blocks, re-read every [limits.inventory] refresh.
    wideblocks.Refresher(
        lambda: runtime.store, lambda: runtime.policy.limits.inventory.refresh
    ).start()
    if policy.trace.signing_key is None:
        log.warning("no [[trace.keys]] in the policy: messages are not stamped with a trace token")
    agent.attach(runtime)  # quarantine index hook; queued desk actions if enabled
    outcomes.attach(runtime)  # queue id -> identity, login blocks; the log watcher if enabled
    try:
        if policy.metrics.listen:
            gauges.install(runtime, [check.name for check in engine.CHECKS])
            metrics.serve(policy.metrics.listen)
    except OSError as exc:  # the metrics port taken between the probe and the bind
        log.error("cannot listen on metrics %s: %s", policy.metrics.listen, exc.strerror)
        return sockets.EXIT_CANNOT_LISTEN

    stop = threading.Event()
    reload = threading.Event()
    for sig in signals.STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    for sig in signals.RELOAD_SIGNALS:
        signal.signal(sig, lambda *_: reload.set())

    milter = policy.milter
    unix = sockets.unix_path(milter.listen)
    mode = int(milter.socket_mode, 8)
    # libmilter creates the socket with the umask's mode: never wider than asked.
    old_umask = os.umask(0o777 & ~mode) if unix else None
    errors: list[BaseException] = []
    worker = threading.Thread(target=_serve, args=(runtime, errors), name="libmilter", daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    if unix is not None and old_umask is not None:
        sockets.wait_and_fix(unix, mode, milter.socket_owner, milter.socket_group, deadline)
        os.umask(old_umask)
    # A worker's parent tells systemd (NotifyAccess=main); a worker does not.
    tell = not workers.in_worker()
    if sockets.wait_listening(milter.listen, deadline) and worker.is_alive():
        log.info("listening on %s", milter.listen)
        if tell:
            notify.ready(f"serving on {milter.listen} ({milter.mode})")

    while not stop.is_set() and worker.is_alive():
        stop.wait(0.2)
        if reload.is_set():
            reload.clear()
            if tell:
                notify.reloading()
            ok = runtime.reload()
            metrics.POLICY_RELOADS.labels(result="ok" if ok else "refused").inc()
            if tell:
                notify.ready(f"serving on {milter.listen}; last reload {'ok' if ok else 'refused'}")
    if errors:
        log.error("milter stopped: %s", errors[0])
        return 1
    taken = not stop.is_set()  # libmilter ended without being asked to
    if taken:
        log.error(
            "libmilter's own signal thread took a SIGHUP, SIGTERM or SIGINT and stopped "
            "the milter: exiting 1 for the service manager to restart it "
            "(reload with SIGUSR1 and stop with SIGUSR2, which only RelayWarden handles)"
        )
    if tell:
        notify.stopping()
    code = _shutdown(runtime, worker)
    return 1 if taken else code


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
