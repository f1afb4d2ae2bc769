"""The relay's trace token: stamped on every message the relay passes, so a
complaint, a bounce or a forwarded copy can be tied back to the transaction.

Other packages call `verify(token, policy.trace)`; the milter calls `stamp`.
"""

from __future__ import annotations

import re
import socket
from functools import lru_cache

from relaywarden.policy.trace import TraceSection
from relaywarden.trace.token import TraceCodec, TraceInfo

__all__ = ["NOTE", "Stamp", "TraceInfo", "codec_for", "relay_name", "stamp", "verify"]

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
NOTE = "trace"  # Message.notes key of this message's Stamp


class Stamp:
    """The token a message is stamped with, and what it encodes."""

    __slots__ = ("info", "token")

    def __init__(self, token: str, info: TraceInfo) -> None:
        self.token = token
        self.info = info


def codec_for(section: TraceSection) -> TraceCodec:
    signing = section.signing_key
    keys = tuple((k.id, k.secret) for k in section.keys)
    return _codec(keys, signing.id if signing else None)


@lru_cache(maxsize=8)  # keys are derived once per policy, not once per message
def _codec(keys: tuple[tuple[str, str], ...], sign_with: str | None) -> TraceCodec:
    return TraceCodec(keys, sign_with)


def relay_name(section: TraceSection) -> str:
    # gethostname, not getfqdn: no DNS lookup on the hot path.
    if section.relay:
        return section.relay
    host = socket.gethostname()[:63]
    return host if _HOST.fullmatch(host) else "relay"


def verify(token: str, section: TraceSection) -> TraceInfo | None:
    """The token's relay, queue id and time if one of our keys made it, else None."""
    if not section.keys:
        return None
    return codec_for(section).verify(token)


def stamp(section: TraceSection, queue_id: str, now: float) -> Stamp | None:
    """A new token for this message; None when no key is configured or no queue id."""
    if section.signing_key is None or not queue_id:
        return None
    relay = relay_name(section)
    try:
        token = codec_for(section).make(relay, queue_id, now)
    except ValueError:
        return None
    info = TraceInfo(relay, queue_id, int(now), section.signing_key.id)
    return Stamp(token, info)
