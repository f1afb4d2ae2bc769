"""A sender's current standing: blocks in force and recent decisions.

`sender_status` is the one place the desk asks "how is this sender doing"; the
per-subject counters of the rate limits are added here when they exist.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any

from relaywarden.store import BlockRecord, RedisStore, redis_errors
from relaywarden.subjects import Subject

MAX_EVENTS_READ = 20_000  # bounds one history query however busy the relay is
RECENT_SHOWN = 20


@dataclass(frozen=True)
class SenderStatus:
    subjects: list[str]
    blocks: list[BlockRecord]
    recent: list[dict[str, Any]]
    per_hour: list[int] = field(default_factory=list)  # oldest first, last 24 hours


def events_since(
    store: RedisStore, since: float, limit: int = MAX_EVENTS_READ
) -> list[dict[str, Any]]:
    """Decision events at or after `since`, newest first."""
    with redis_errors("event read"):
        rows: list[tuple[bytes, dict[bytes, bytes]]] = store.client.xrevrange(  # type: ignore[assignment]
            store.keys.events, max="+", min=f"{int(since * 1000)}-0", count=limit
        )
    out = []
    for event_id, fields in rows:
        try:
            event = json.loads(fields[b"json"])
        except (KeyError, ValueError):
            continue
        event["_time"] = int(event_id.split(b"-")[0]) / 1000
        out.append(event)
    return out


def matches(subject: Subject, event: dict[str, Any]) -> bool:
    sender = str(event.get("sender") or "").lower()
    match subject.kind:
        case "vps":
            return event.get("vps") == subject.value
        case "customer":
            return event.get("customer") == subject.value
        case "user":
            return event.get("sasl_user") == subject.value
        case "sender":
            return sender == subject.value
        case "domain":
            domain = sender.rsplit("@", 1)[-1] if "@" in sender else event.get("sender_domain")
            return bool(domain) and (
                domain == subject.value or str(domain).endswith("." + subject.value)
            )
        case "network":
            try:
                return ipaddress.ip_address(str(event.get("client_address"))) in subject.network
            except ValueError:
                return False
    return False


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
