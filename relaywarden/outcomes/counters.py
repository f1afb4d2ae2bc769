"""Outcome counters in Redis: their keys, and reading the sliding windows back.

The watcher writes them (relaywarden/lua/outcomes.lua); the milter reads a
subject's window hash at MAIL FROM in its existing round trip; the desk reads
the 24-hour chart. The ring layout is check.lua's (see there for the bound).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from relaywarden.keys import digest
from relaywarden.subjects import Subject

# One letter per counted kind: the field names stay short (memory per subject).
DELIVERED, DEFERRED, BOUNCED, UNKNOWN_RCPT, AUTH_FAILED = "d", "f", "b", "u", "a"
COMPLAINTS = "c"  # written by the complaints listener (relaywarden/complaints/)
CODES = {
    DELIVERED: "delivered",
    DEFERRED: "deferred",
    BOUNCED: "bounced",
    UNKNOWN_RCPT: "unknown_recipients",
    AUTH_FAILED: "auth_failures",
    COMPLAINTS: "complaints",
}
NSUB = 12  # sub-buckets of the policy window: a window of 1h slides by 5 minutes
DAY, HOURS = 86400.0, 24


def window_key(prefix: str, subject: Subject) -> str:
    # Hashed: nothing a customer chose (a SASL login) is spliced into a key.
    return f"{prefix}:out:{{{digest(str(subject))}}}"


def day_key(prefix: str, subject: Subject) -> str:
    return window_key(prefix, subject) + ":day"


def position_key(prefix: str, relay: str) -> str:
    return f"{prefix}:watch:{digest(relay)}"


def increments_spec(
    prefix: str, increments: Mapping[Subject, Mapping[str, int]], window: float
) -> tuple[list[str], list[dict[str, Any]]]:
    """KEYS (from the second on) and "s" entries of outcomes.lua for these counts:
    each subject's window ring and its 24-hour chart."""
    keys: list[str] = []
    scopes: list[dict[str, Any]] = []
    for subject, per in increments.items():
        keys.append(window_key(prefix, subject))
        scopes.append(
            {
                "c": [[code, window, NSUB, n] for code, n in per.items()],
                "ttl": int(window * (1 + 1 / NSUB)) + 60,
            }
        )
        keys.append(day_key(prefix, subject))
        scopes.append(
            {"c": [[code, DAY, HOURS, n] for code, n in per.items()], "ttl": int(DAY) + 3700}
        )
    return keys, scopes


def _fmt(x: float) -> str:
    """The Lua side's "%.17g" for the numbers used here (whole seconds)."""
    return f"{x:.17g}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _buckets(
    fields: Mapping[bytes | str, bytes | str], window: float
) -> Iterator[tuple[str, int, int]]:
    """(kind, sub-window index, count) of every well-formed field of `window`."""
    for raw_name, raw_value in fields.items():
        name, value = _text(raw_name), _text(raw_value)
        code, _, rest = name.partition(_fmt(window) + ":")
        if code not in CODES or not rest:
            continue
        bucket, _, n = value.partition(":")
        try:
            yield code, int(bucket), int(n)
        except ValueError:
            continue


def counts(
    fields: Mapping[bytes | str, bytes | str], window: float, nsub: int, now: float
) -> dict[str, int]:
    """Each kind's count over the last `window` (at most window + window/nsub)."""
    i = int(now // (window / nsub))
    out = dict.fromkeys(CODES, 0)
    for code, b, count in _buckets(fields, window):
        if i - nsub <= b <= i:
            out[code] += count
    return out


def per_hour(fields: Mapping[bytes | str, bytes | str], now: float) -> dict[str, list[int]]:
    """Each kind per hour over the last 24 hours, oldest first (the desk's chart)."""
    i = int(now // 3600)
    out = {code: [0] * HOURS for code in CODES}
    for code, b, count in _buckets(fields, DAY):
        if i - HOURS < b <= i:
            out[code][HOURS - 1 - (i - b)] += count
    return out


@dataclass(frozen=True)
class Tally:
    """One subject's outcome counts over the policy window."""

    subject: str
    counts: dict[str, int]

    @property
    def attempts(self) -> int:
        return self.counts[DELIVERED] + self.counts[DEFERRED] + self.counts[BOUNCED]

    def share(self, code: str) -> float:
        return self.counts[code] / self.attempts if self.attempts else 0.0
