"""A circuit breaker in front of Redis: a dead Redis costs one timeout per
interval, not one per message.

Without it, every message waits the full `[redis] timeout` when Redis is down
(refused connections are fast, but a server that accepts and never answers, or
a stalled one, costs the whole timeout each time). After `failures` connection
errors or timeouts in a row the breaker opens: every Redis call fails at once
(a redis ConnectionError, so the configured fail mode applies as for any Redis
failure) for `interval` seconds. Then one call is let through as a probe
(half-open): success closes the breaker, failure opens it for another interval.

It sits in redis-py's connection class, so every command and pipeline of the
process passes through it without the callers knowing.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.sentinel

from relaywarden import metrics

log = logging.getLogger("relaywarden.breaker")

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}


class CircuitOpen(redis.ConnectionError):
    """Redis is considered down: failed fast, without waiting for a timeout."""


class Breaker:
    def __init__(
        self,
        failures: int = 1,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "redis",
    ) -> None:
        self.failures = max(1, failures)
        self.interval = interval
        self.clock = clock
        self.name = name
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False
        self.probe_started = 0.0
        self._lock = threading.Lock()
        metrics.BREAKER_STATE.labels(service=name).set(CLOSED)

    def before(self) -> bool:
        """Raise CircuitOpen unless a call may go to Redis now; True if the caller
        is the half-open probe (it then owns the right until it succeeds or fails)."""
        with self._lock:
            if self.state == CLOSED:
                return False
            now = self.clock()
            if self.state == OPEN and now - self.opened_at >= self.interval:
                self._set(HALF_OPEN)
            # A probe that never reported back (an unexpected error) is replaced.
            stale = self.probing and now - self.probe_started >= self.interval
            if self.state == HALF_OPEN and (not self.probing or stale):
                self.probing, self.probe_started = True, now
                return True
        metrics.BREAKER_REJECTED.labels(service=self.name).inc()
        raise CircuitOpen(f"{self.name} circuit open: failing fast for up to {self.interval:g}s")

    def success(self) -> None:
        if self.state == CLOSED and self.consecutive == 0:
            return  # the common case, without the lock
        with self._lock:
            self.consecutive = 0
            self.probing = False
            if self.state != CLOSED:
                log.warning("%s answers again: circuit closed", self.name)
                self._set(CLOSED)

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self.consecutive += 1
            self.probing = False
            if self.state == HALF_OPEN or (
                self.state == CLOSED and self.consecutive >= self.failures
            ):
                log.warning(
                    "%s unreachable (%s: %s): circuit open, failing fast for %gs",
                    self.name, type(exc).__name__, exc, self.interval,
                )  # fmt: skip
                self.opened_at = self.clock()
                if self.state == CLOSED:
                    metrics.BREAKER_OPENED.labels(service=self.name).inc()
                self._set(OPEN)

    def _set(self, state: int) -> None:
        self.state = state
        metrics.BREAKER_STATE.labels(service=self.name).set(state)


_DOWN = (redis.ConnectionError, redis.TimeoutError)


class _Guarded:
    """Mixed into redis-py's connection classes: every connect, packet sent and
    reply read passes the breaker. (redis-py connects a pooled connection when
    the pool hands it out and sends its handshake from connect(): the probe is a
    connection, allowed everything until its first reply or failure.)"""

    # Bound per client by connection_class(): not a connection kwarg, so the
    # pool's connection_kwargs stay those of a plain redis-py connection.
    breaker: Breaker | None = None
    _probe: bool = False
    # Plain TCP and unix sockets: the read/write timeout kept by the kernel.
    kernel_timeouts: bool = False

    def _admit(self) -> None:
        if self.breaker is None or self._probe or self.breaker.state == CLOSED:
            return
        self._probe = self.breaker.before()

    def _failed(self, exc: BaseException) -> None:
        if self.breaker is not None and not isinstance(exc, CircuitOpen):
            self._probe = False
            self.breaker.failure(exc)

    def connect(self) -> None:
        if getattr(self, "_sock", None) is None:
            self._admit()  # no TCP connect at all while the circuit is open
        try:
            super().connect()  # type: ignore[misc]
        except _DOWN as exc:
            self._failed(exc)
            raise
        if self.kernel_timeouts:
            _kernel_timeouts(self)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            self._admit()
        except CircuitOpen:
            self.disconnect()  # type: ignore[attr-defined]
            raise
        try:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
        except _DOWN as exc:
            self._failed(exc)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _DOWN as exc:
            self._failed(exc)
            raise
        if self.breaker is not None:
            self._probe = False
            self.breaker.success()
        return response


def _kernel_timeouts(conn: Any) -> None:
    """The socket timeout as SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket, once per
    socket. A Python-level timeout makes every recv and send a poll() first, and
    each of the two calls gives up the GIL: with twenty milter threads waiting for
    it, every hand-over costs a context switch (measured: the largest share of
    the milter's CPU under load). A kernel timeout surfaces as EAGAIN, which
    redis-py reports as a ConnectionError: a Redis failure like a timeout, for
    the breaker and the fail mode alike."""
    sock = getattr(conn, "_sock", None)
    timeout = conn.socket_timeout
    if sock is None or not timeout or getattr(conn, "_kernel_sock", None) is sock:
        return
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    conn._kernel_sock = sock


class GuardedConnection(_Guarded, redis.Connection):
    kernel_timeouts = True


class GuardedUnixConnection(_Guarded, redis.UnixDomainSocketConnection):
    kernel_timeouts = True


class GuardedSSLConnection(_Guarded, redis.SSLConnection):
    pass


class GuardedSentinelConnection(_Guarded, redis.sentinel.SentinelManagedConnection):
    kernel_timeouts = True


def connection_class(url: str, breaker: Breaker) -> type[_Guarded]:
    """The connection class for `url`'s scheme, bound to `breaker`."""
    base: type[_Guarded] = GuardedConnection
    if url.startswith("redis+sentinel://"):
        base = GuardedSentinelConnection
    elif url.startswith("unix://"):
        base = GuardedUnixConnection
    elif url.startswith("rediss://"):
        base = GuardedSSLConnection
    return type(base.__name__, (base,), {"breaker": breaker})
