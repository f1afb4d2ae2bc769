"""A sender's current standing: blocks in force and recent decisions.

`sender_status` is the one place the desk asks "how is this sender doing"; the
per-subject counters of the rate limits are added here when they exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from relaywarden.events import events_since, matches
from relaywarden.store import BlockRecord, RedisStore
from relaywarden.subjects import Subject

RECENT_SHOWN = 20


@dataclass(frozen=True)
class SenderStatus:
    subjects: list[str]
    blocks: list[BlockRecord]
    recent: list[dict[str, Any]]
    per_hour: list[int] = field(default_factory=list)  # oldest first, last 24 hours
    # Per subject: windows, effective limits and why (relaywarden.limits.status).
    limits: list[dict[str, Any]] = field(default_factory=list)


def per_hour(events: list[dict[str, Any]], now: float, hours: int = 24) -> list[int]:
    counts = [0] * hours
    for event in events:
        age = int((now - event["_time"]) // 3600)
        if 0 <= age < hours:
            counts[hours - 1 - age] += 1
    return counts


def sender_status(
    store: RedisStore, subjects: list[Subject], now: float | None = None
) -> SenderStatus:
    now = time.time() if now is None else now
    events = events_since(store, now - 86400)
    mine = [e for e in events if any(matches(s, e) for s in subjects)]
    # The chart follows the first subject (the VPS for a held message).
    chart = [e for e in events if subjects and matches(subjects[0], e)]
    return SenderStatus(
        subjects=[str(s) for s in subjects],
        blocks=store.blocks_for(subjects),
        recent=mine[:RECENT_SHOWN],
        per_hour=per_hour(chart, now),
    )
