"""Subjects: who a block, a status query or a counter is about.

Written as `kind:value`. The same syntax serves static blocks in the policy, the
`block`/`unblock`/`status` commands and the web page, so an abuse analyst can
copy a subject from one to the other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from relaywarden.returnpath import sender_key

SubjectKind = Literal["network", "vps", "customer", "user", "sender", "domain"]
KINDS: tuple[SubjectKind, ...] = ("network", "vps", "customer", "user", "sender", "domain")
MAX_VALUE = 320  # the longest valid mailbox; anything longer is not a real subject


def fold_login(login: str) -> str:
    """SASL logins compare case-insensitively (`Bob` and `bob` are one login):
    folded the same way in the inventory, the scopes and `user:` blocks."""
    return login.strip().casefold()


class SubjectError(ValueError):
    pass


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.value, strict=False)


def parse_subject(text: str) -> Subject:
    kind, sep, value = text.strip().partition(":")
    if not sep or kind not in KINDS:
        raise SubjectError(f"subject {text!r} must be one of {', '.join(k + ':…' for k in KINDS)}")
    value = value.strip()
    if not value:
        raise SubjectError(f"subject {text!r} has no value after '{kind}:'")
    if len(value) > MAX_VALUE or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise SubjectError(f"subject {text!r} is too long or holds control characters")
    if kind in ("network", "vps"):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise SubjectError(f"subject {text!r}: {exc}") from exc
        value = str(net) if kind == "network" else value
    if kind == "user":
        value = fold_login(value)
    if kind == "sender":
        value = sender_key(value)  # VERP, SRS, BATV, +tag: the sender they stand for
    if kind == "domain":
        value = value.lower()
        value = value.rstrip(".")
    return Subject(kind, value)
