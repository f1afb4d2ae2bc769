"""Finding a decision by its reference (RW-XXXXXXXXXX), the tag a customer quotes.

Every decision, accepted, rejected, deferred or held, is in the decision event
stream with its `ref`; this walks the stream newest first, a chunk at a time,
testing the raw bytes before parsing, so a lookup over the whole (capped)
stream stays cheap. Held messages are also found through the quarantine index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relaywarden.refs import REF_PATTERN
from relaywarden.store import RedisStore, redis_errors

CHUNK = 2000
MAX_SCAN = 2_000_000  # more than any events_maxlen: the whole stream


class RefError(ValueError):
    pass


@dataclass(frozen=True)
class RefLookup:
    ref: str
    decisions: list[dict[str, Any]]  # newest first; `_time` added (epoch seconds)
    scanned: int  # stream entries read


def check_ref(text: str) -> str:
    ref = text.strip().upper()
    if not REF_PATTERN.fullmatch(ref):
        raise RefError(f"{text[:40]!r} is not a reference like RW-ABCDEFGHIJ")
    return ref


def find_decisions(store: RedisStore, ref: str, max_scan: int = MAX_SCAN) -> RefLookup:
    ref = check_ref(ref)
    needle = ref.encode()  # the bytes are tested before parsing, whatever the JSON spacing
    high = "+"
    found: list[dict[str, Any]] = []
    scanned = 0
    while scanned < max_scan:
        with redis_errors("event read"):
            rows: list[tuple[bytes, dict[bytes, bytes]]] = store.client.xrevrange(  # type: ignore[assignment]
                store.keys.events, max=high, min="-", count=CHUNK
            )
        for event_id, fields in rows:
            raw = fields.get(b"json", b"")
            if needle in raw:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if event.get("ref") == ref:
                    event["_time"] = int(event_id.split(b"-")[0]) / 1000
                    found.append(event)
        scanned += len(rows)
        if len(rows) < CHUNK:
            break
        high = f"({rows[-1][0].decode()}"
    return RefLookup(ref, found, scanned)
