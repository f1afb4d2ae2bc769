"""Terminal text for values that came from a message: readable, and inert.

Control characters (which could move the cursor or forge a line) and bidi
overrides (which could reorder what the reader sees) are shown as escapes.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def inert(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "-"
    if isinstance(value, dict):
        return "{" + evidence_text(value) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return inert(str(value))


def evidence_text(evidence: Any) -> str:
    """`key: value; key: value` for a finding's evidence (a dict), else its text."""
    if not evidence:
        return ""
    if not isinstance(evidence, dict):
        return _value(evidence)
    return "; ".join(f"{inert(str(k))}: {_value(v)}" for k, v in evidence.items())
