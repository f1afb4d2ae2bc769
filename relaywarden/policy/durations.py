"""Durations written as people write them in config: "500ms", "3s", "2h", "14d"."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
# No duration anywhere (a block, a window, a retention) is longer than ten years:
# beyond that, epoch arithmetic and Redis EXPIRE overflow, and nobody means it.
MAX_DURATION = 10 * 365 * 86400.0


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration; a bare number is seconds. At most MAX_DURATION."""
    if isinstance(text, bool):
        raise ValueError("a duration is a number with a unit, like '30s' or '2h'")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return check_duration(float(text))
    match = _DURATION.match(text) if len(text) <= 40 else None
    if match is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise ValueError(f"{shown!r} is not a duration; write e.g. '500ms', '30s', '2h' or '14d'")
    return check_duration(float(match.group(1)) * _UNITS[match.group(2)])


def check_duration(seconds: float) -> float:
    """`seconds`, if it is a finite duration no longer than MAX_DURATION."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration is a finite, non-negative time")
    if seconds > MAX_DURATION:
        raise ValueError("a duration is at most 10 years (3650d)")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
