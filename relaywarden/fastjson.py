"""JSON for the per-message hot path (decision log line, decision event): orjson,
several times faster than the standard library, with the standard library as the
fallback for what orjson refuses (strings holding lone surrogates, which
surrogate-escaped header bytes can produce; integers beyond 64 bits)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """`value` as compact JSON text; anything unknown becomes its str()."""
    try:
        return orjson.dumps(value, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, default=str, ensure_ascii=False)
