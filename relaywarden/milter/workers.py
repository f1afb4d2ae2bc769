"""`[milter] workers = N`: N milter processes sharing one listening socket.

One Python process runs one callback at a time (the GIL), so one process uses
one core however many threads libmilter starts. The parent opens the socket
once (libmilter's smfi_opensocket, through pymilter), then forks the workers
before any thread exists; each worker's smfi_main finds the socket already open
(libmilter's mi_opensocket returns early for a valid listen fd) and accepts on
it, so the kernel hands each connection from Postfix to one of them.

The parent serves no mail: it passes a reload on (SIGHUP or SIGUSR1, after
reloading its own copy of the policy, which a replacement worker starts from)
and a stop (SIGTERM or SIGUSR2: each worker turns new transactions away and
drains for `shutdown_grace`), as SIGUSR1 and SIGUSR2, which a worker's libmilter
never takes for itself (see server.py), replaces a worker
that dies, and removes a unix socket once every worker is gone. Workers never
close the shared socket themselves (libmilter would unlink a unix socket's path
when it does, and the siblings would lose it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import Milter
import milter as libmilter

from relaywarden import metrics
from relaywarden.daemon import notify, sockets
from relaywarden.inventory import build_inventory
from relaywarden.milter import signals
from relaywarden.runtime import Runtime, _resolver_for, _store_for

log = logging.getLogger("relaywarden.workers")

# This process's worker number, None in the parent or a single-process milter.
INDEX: int | None = None
# A worker that dies more often than this within RESPAWN_WINDOW seconds is a
# crash loop: the parent stops everything and exits 1 rather than spin.
MAX_RESPAWNS = 5
RESPAWN_WINDOW = 60.0


def in_worker() -> bool:
    return INDEX is not None


def open_listener(runtime: Runtime) -> None:
    """Register the callbacks and open the socket in this process, as pymilter's
    runmilter does up to smfi_main; a worker's runmilter then reuses both."""
    policy = runtime.policy.milter
    libmilter.set_connect_callback(Milter.connect_callback)
    libmilter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    libmilter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    libmilter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    libmilter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    libmilter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    libmilter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    libmilter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    libmilter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    libmilter.set_close_callback(Milter.close_callback)
    libmilter.setconn(policy.listen)
    if policy.io_timeout > 0:
        libmilter.settimeout(int(policy.io_timeout))
    libmilter.register(
        policy.name,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )
    unix = unix_path(policy.listen)
    mode = int(policy.socket_mode, 8)
    old_umask = os.umask(0o777 & ~mode) if unix else None
    try:
        libmilter.opensocket(True)  # True: remove a stale unix socket first
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    if unix is not None:
        sockets.set_owner(unix, policy.socket_owner, policy.socket_group)
        unix.chmod(mode)


def pin_to_cpu(index: int, cpus: Sequence[int] = ()) -> int | None:
    """Keep this process (and the threads it starts from now on) on one CPU: the
    index-th of `cpus`, or of those it may run on, round robin. None when the CPU
    is not one this process may use, or the system refuses."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        choices = list(cpus) or allowed
        cpu = choices[index % len(choices)]
        if cpu not in allowed:
            log.warning(
                "[milter] pin_cpus: CPU %d is not one this process may run on (%s): "
                "it runs unpinned", cpu, ",".join(map(str, allowed)),
            )  # fmt: skip
            return None
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:  # a container's cpuset, a seccomp filter
        log.warning("could not pin the milter to a CPU (%s): it runs unpinned", exc)
        return None
    return cpu


def unix_path(listen: str) -> Path | None:
    for prefix in ("unix:", "local:"):
        if listen.startswith(prefix):
            return Path(listen[len(prefix) :])
    return None


def fresh_runtime(parent: Runtime) -> Runtime:
    """The parent's policy with clients of the worker's own: a Redis pool, the
    inventory's refresh thread and the DNS cache do not survive a fork."""
    policy = parent.policy
    store = _store_for(policy)
    inventory = build_inventory(policy, parent.policy_path, store)
    resolver = _resolver_for(policy)
    return Runtime(parent.policy_path, parent.overrides, policy, store, inventory, resolver)


class Supervisor:
    def __init__(self, runtime: Runtime, serve: Callable[[Runtime], int]) -> None:
        self.runtime = runtime
        self.serve = serve
        self.count = runtime.policy.milter.worker_count()
        self.children: dict[int, int] = {}  # pid -> worker index
        self.deaths: list[float] = []
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.crashed = False

    def spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.children[pid] = index
            return
        # The worker. Whatever happens, it never returns into the parent's code.
        code = 1
        try:
            for sig in (*signals.STOP_SIGNALS, *signals.RELOAD_SIGNALS):
                signal.signal(sig, signal.SIG_DFL)
            global INDEX
            INDEX = index
            metrics.PORT_OFFSET = index  # worker i serves metrics on port + i
            code = self.serve(fresh_runtime(self.runtime))
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.children.pop(pid, None)
            if index is None or self.stop.is_set():
                continue
            code = os.waitstatus_to_exitcode(status)
            log.error("worker %d (pid %d) exited (%s); starting a new one", index, pid, code)
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if now - t < RESPAWN_WINDOW] + [now]
            if len(self.deaths) > MAX_RESPAWNS:
                log.error(
                    "%d worker deaths within %.0fs: stopping", len(self.deaths), RESPAWN_WINDOW
                )
                self.stop.set()
                self.crashed = True
                return
            self.spawn(index)

    def signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def run(self) -> int:
        for sig in signals.STOP_SIGNALS:
            signal.signal(sig, lambda *_: self.stop.set())
        for sig in signals.RELOAD_SIGNALS:
            signal.signal(sig, lambda *_: self.reload.set())
        for index in range(self.count):
            self.spawn(index)
        log.info(
            "listening on %s with %d worker processes (pids %s)",
            self.runtime.policy.milter.listen,
            self.count,
            " ".join(str(p) for p in self.children),
        )
        listen = self.runtime.policy.milter.listen
        notify.ready(f"serving on {listen} with {self.count} workers")
        while not self.stop.is_set():
            self.stop.wait(0.2)
            self.reap()
            if self.reload.is_set():
                self.reload.clear()
                # Our copy too: a worker started after this gets the new policy.
                notify.reloading()
                ok = self.runtime.reload()
                notify.ready(f"serving on {listen}; last reload {'ok' if ok else 'refused'}")
                _close_inventory(self.runtime)
                # Not SIGHUP: a worker's libmilter may take that one and stop.
                self.signal_all(signals.RELOAD)
        notify.stopping()
        return self.shutdown()

    def shutdown(self) -> int:
        grace = self.runtime.policy.milter.shutdown_grace
        log.info("stopping %d worker(s): each drains for up to %.0fs", len(self.children), grace)
        self.signal_all(signals.STOP)  # a stop libmilter never takes for itself
        deadline = time.monotonic() + grace + 5
        failed = self.crashed
        while self.children and time.monotonic() < deadline:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children.pop(pid, None)
            failed = failed or os.waitstatus_to_exitcode(status) != 0
        if self.children:
            log.warning("killing %d worker(s) still running after the grace", len(self.children))
            self.signal_all(signal.SIGKILL)
            for pid in list(self.children):
                os.waitpid(pid, 0)
            self.children.clear()
        unix = unix_path(self.runtime.policy.milter.listen)
        if unix is not None:
            unix.unlink(missing_ok=True)
        log.info("stopped")
        return 1 if failed else 0


def supervise(runtime: Runtime, serve: Callable[[Runtime], int]) -> int:
    """Open the socket, fork the workers (each running `serve`), look after them."""
    open_listener(runtime)
    _close_inventory(runtime)
    return Supervisor(runtime, serve).run()


def _close_inventory(runtime: Runtime) -> None:
    """The parent serves no mail: no inventory refresh thread alive across forks."""
    getattr(runtime.inventory, "close", lambda: None)()
