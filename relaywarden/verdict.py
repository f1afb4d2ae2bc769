"""What the engine decides about a message, independent of any MTA.

The reply types make it impossible to send a 5xx with a tempfail or a 4xx with a
reject: the constructor checks the class of the code, so a wrong pairing fails
at policy load or in tests, never on the wire.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

_ENHANCED = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
# Reply text goes onto the SMTP wire: printable ASCII only, bounded, and no '%'
# because libmilter treats it as a format character.
_UNSAFE_TEXT = re.compile(r"[^\x20-\x7e]|%")
MAX_REPLY_TEXT = 400


class Action(enum.IntEnum):
    """Ordered by severity: when several findings force actions, the highest wins."""

    ACCEPT = 0
    QUARANTINE = 1
    TEMPFAIL = 2
    DISCARD = 3
    REJECT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Action:
        return cls[value.strip().upper()]


def clean_reply_text(text: str) -> str:
    return _UNSAFE_TEXT.sub("?", text)[:MAX_REPLY_TEXT]


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: basic code, enhanced status code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        match = _ENHANCED.match(self.enhanced)
        if match is None:
            raise ValueError(f"enhanced status code {self.enhanced!r} is not of the form X.Y.Z")
        if str(self.code)[0] != match.group(1):
            raise ValueError(f"reply {self.code} does not match enhanced code {self.enhanced}")
        object.__setattr__(self, "text", clean_reply_text(self.text))

    def line(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


@dataclass(frozen=True)
class TempFailReply(Reply):
    """A 4xx reply: the sending MTA keeps the message and retries."""

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 499:
            raise ValueError(f"a tempfail needs a 4xx code, not {self.code}")
        super().__post_init__()


@dataclass(frozen=True)
class RejectReply(Reply):
    """A 5xx reply: the sending MTA bounces the message to its sender."""

    def __post_init__(self) -> None:
        if not 500 <= self.code <= 599:
            raise ValueError(f"a reject needs a 5xx code, not {self.code}")
        super().__post_init__()


@dataclass(frozen=True)
class Finding:
    """One thing a check noticed. `evidence` is data for logs and the abuse team,
    never for the SMTP reply (it may hold what the customer wrote)."""

    check: str
    name: str
    score: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    # A finding may force an action regardless of the total score (a static block,
    # an invalid sender); `reply` then says what the client is told.
    action: Action | None = None
    reply: Reply | None = None
    # Short reason class for the reply text, e.g. "blocked sender".
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "name": self.name, "score": self.score}
        if self.evidence:
            out["evidence"] = self.evidence
        if self.action is not None:
            out["action"] = self.action.label
        return out


@dataclass(frozen=True)
class Verdict:
    action: Action
    reply: Reply | None
    score: float
    findings: tuple[Finding, ...]
    ref: str
    # Shadow mode: `action` is what was applied (accept), these what enforce mode
    # would have done (relaywarden/rollout/shadow.py).
    would: Action | None = None
    would_reply: Reply | None = None

    @property
    def reason(self) -> str:
        forcing = [f for f in self.findings if f.action == self.action and f.reason]
        if forcing:
            return forcing[0].reason
        scored = sorted(self.findings, key=lambda f: f.score, reverse=True)
        return scored[0].reason if scored and scored[0].reason else "policy"
