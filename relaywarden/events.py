"""Reading the decision event stream: by time, and by who a decision was about."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from relaywarden.store import RedisStore, redis_errors
from relaywarden.subjects import Subject

MAX_EVENTS_READ = 20_000  # bounds one history query however busy the relay is


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
    if subject.within is not None and not matches(subject.within, event):
        return False  # customer:ID/sender:ADDRESS: that customer's mail only
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
