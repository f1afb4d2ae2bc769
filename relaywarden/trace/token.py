"""The trace token: relay, queue id and time, HMAC-protected, in one short
URL- and header-safe string that any holder of the policy's keys can verify
offline (no Redis, no DNS).

Why HMAC and not encryption: what the token carries (the relay's name and its
Postfix queue id) is already in the Received header the relay's own Postfix
adds, so hiding it buys nothing; what matters is that nobody without the key
can make a token that verifies, and that no customer can be read from it.

Layout, before unpadded base64url:
    version (1 byte = 1) | key id length (1) | key id | time (4, big-endian,
    Unix seconds) | relay length (1) | relay | queue id | tag (16)
where tag = HMAC-SHA256(key, everything before it)[:16]. 128 bits of tag is
far beyond what an online forger can guess; the queue id takes the rest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

VERSION = 1
TAG_BYTES = 16
MAX_TOKEN_CHARS = 200  # nothing longer is decoded at all
_QUEUE_ID = re.compile(rb"[A-Za-z0-9]{1,32}")
_RELAY = re.compile(rb"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_KEY_ID = re.compile(rb"[A-Za-z0-9]{1,8}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
# Domain separation: the same secret used elsewhere gives an unrelated key here.
_DERIVE = b"relaywarden trace token v1"


@dataclass(frozen=True)
class TraceInfo:
    relay: str
    queue_id: str
    time: int  # Unix seconds, when the relay stamped the message
    key_id: str


def derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _DERIVE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    if len(text) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class TraceCodec:
    """Signs with one key, verifies with all of them (key rotation)."""

    def __init__(self, keys: Iterable[tuple[str, str]], sign_with: str | None = None) -> None:
        self._keys = {kid: derive_key(secret) for kid, secret in keys}
        self._sign_with = sign_with

    def make(self, relay: str, queue_id: str, when: float) -> str:
        if self._sign_with is None:
            raise ValueError("no trace key to sign with")
        kid = self._sign_with.encode("ascii")
        relay_b, qid = relay.encode("ascii"), queue_id.encode("ascii")
        if not (_KEY_ID.fullmatch(kid) and _RELAY.fullmatch(relay_b) and _QUEUE_ID.fullmatch(qid)):
            raise ValueError(f"cannot trace relay {relay!r} queue id {queue_id!r}")
        body = (
            bytes([VERSION, len(kid)])
            + kid
            + struct.pack(">I", int(when) & 0xFFFFFFFF)
            + bytes([len(relay_b)])
            + relay_b
            + qid
        )
        tag = hmac.new(self._keys[self._sign_with], body, hashlib.sha256).digest()[:TAG_BYTES]
        return _b64(body + tag)

    def verify(self, token: str) -> TraceInfo | None:
        """The token's contents, or None when it is not a token one of our keys made."""
        raw = _unb64(token.strip())
        if raw is None or len(raw) < 2 + TAG_BYTES or raw[0] != VERSION:
            return None
        body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        klen = body[1]
        kid_b = body[2 : 2 + klen]
        key = self._keys.get(kid_b.decode("ascii", "replace"))
        if key is None:
            return None
        expected = hmac.new(key, body, hashlib.sha256).digest()[:TAG_BYTES]
        if not hmac.compare_digest(tag, expected):
            return None
        # Authentic from here on: the layout is ours, but check it anyway.
        rest = body[2 + klen :]
        if len(rest) < 6:
            return None
        (when,) = struct.unpack(">I", rest[:4])
        rlen = rest[4]
        relay_b, qid = rest[5 : 5 + rlen], rest[5 + rlen :]
        if not (_RELAY.fullmatch(relay_b) and _QUEUE_ID.fullmatch(qid)):
            return None
        return TraceInfo(relay_b.decode(), qid.decode(), when, kid_b.decode())
