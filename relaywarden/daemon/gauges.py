"""Gauges sampled when Prometheus scrapes, not on the mail path."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from relaywarden import metrics
from relaywarden.errors import StoreError
from relaywarden.runtime import Runtime

log = logging.getLogger("relaywarden.metrics")

HELD_CACHE_SECONDS = 30.0


class Cached:
    """A value recomputed at most every `ttl` seconds; NaN while it cannot be read."""

    def __init__(
        self, read: Callable[[], float], ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.read, self.ttl, self.clock = read, ttl, clock
        self._value, self._at = float("nan"), float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            if self.clock() - self._at >= self.ttl:
                self._at = self.clock()
                try:
                    self._value = float(self.read())
                except StoreError as exc:
                    log.warning("metric not sampled: %s", exc)
                    self._value = float("nan")
            return self._value


def held_on_this_relay(runtime: Runtime) -> float:
    from relaywarden.desk import index

    relay = runtime.policy.quarantine.relay
    return sum(1 for e in index.recent(runtime.store) if e.relay == relay and e.state == "held")


def install(runtime: Runtime, check_names: list[str]) -> None:
    metrics.initialise(check_names)
    metrics.HELD_MESSAGES.set_function(
        Cached(lambda: held_on_this_relay(runtime), HELD_CACHE_SECONDS)
    )
