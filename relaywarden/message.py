"""The facts of one SMTP transaction, as the adapter saw them.

Everything here is plain data: the milter adapter fills it in, tests and replays
build it from .eml files, and the engine only reads it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import compat32
from functools import cached_property
from typing import Any

from relaywarden.content.view import ContentView
from relaywarden.encwords import Decoded, decode_words

# Bounds that keep one hostile message from eating the milter's memory. A header
# beyond these is still counted (so "too many headers" is visible) but not kept.
MAX_HEADERS_KEPT = 1000
MAX_HEADER_BYTES_KEPT = 64 * 1024
MAX_RCPTS_KEPT = 1000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalise_ip(text: str | None) -> IPAddress | None:
    """Parse a client address; IPv4-mapped IPv6 becomes plain IPv4."""
    if not text:
        return None
    text = text.strip().removeprefix("IPv6:").removeprefix("IPV6:").strip("[]")
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def decode_bytes(raw: bytes) -> str:
    """Bytes from the wire to text, never raising: UTF-8 where valid, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def unfold(raw: bytes) -> str:
    """A header value as text on one line, encoded words left as written."""
    return decode_bytes(raw).replace("\r\n", "\n").replace("\n", "").strip()


def decode_header_value(raw: bytes) -> str:
    """A header value as a person would read it: unfolded, RFC 2047 words decoded.

    Never raises; a malformed encoded word is left as it was written.
    """
    return decode_words(unfold(raw)).text


@dataclass(frozen=True)
class HeaderField:
    name: str
    raw: bytes

    # Decoded once per header however many checks read it (cached_property
    # writes the instance dict directly, so the dataclass stays frozen).
    @cached_property
    def decoded(self) -> Decoded:
        return decode_words(self.unfolded)

    @property
    def value(self) -> str:
        return self.decoded.text

    @cached_property
    def unfolded(self) -> str:
        return unfold(self.raw)


@dataclass
class Message:
    """One transaction. Fields are filled stage by stage; checks must cope with gaps."""

    queue_id: str = ""
    client_address: IPAddress | None = None
    client_name: str = ""
    helo: str = ""
    sasl_user: str = ""
    mail_from: str | None = None  # "" is the null sender <>; None means not seen yet
    mail_params: dict[str, str] = field(default_factory=dict)
    rcpts: list[str] = field(default_factory=list)
    rcpt_count: int = 0
    headers: list[HeaderField] = field(default_factory=list)
    header_count: int = 0
    header_bytes: int = 0
    headers_truncated: bool = False
    body_size: int = 0
    body_digest: str = ""
    # What the content checks may read of the body (bounded; None: not built).
    content: ContentView | None = None
    # Working state of checks for this transaction only (e.g. the rate allowance
    # fetched at MAIL FROM that RCPT decisions use); never anything the client wrote.
    notes: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # Lower-cased name -> fields, for the dozen lookups a message gets; rebuilt when
    # `headers` has grown or was replaced since (it is only ever appended to).
    _by_name: dict[str, list[HeaderField]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _indexed: tuple[int, int] = field(default=(0, 0), init=False, repr=False, compare=False)

    def add_rcpt(self, rcpt: str) -> None:
        self.rcpt_count += 1
        if len(self.rcpts) < MAX_RCPTS_KEPT:
            self.rcpts.append(rcpt)

    def add_header(self, name: str, raw: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(raw)
        if len(self.headers) >= MAX_HEADERS_KEPT or len(raw) > MAX_HEADER_BYTES_KEPT:
            self.headers_truncated = True
            raw = raw[:MAX_HEADER_BYTES_KEPT]
            if len(self.headers) >= MAX_HEADERS_KEPT:
                return
        self.headers.append(HeaderField(name, raw))

    def header_values(self, name: str) -> list[str]:
        return [h.value for h in self.header_fields(name)]

    def header_fields(self, name: str) -> list[HeaderField]:
        headers = self.headers
        if self._indexed != (id(headers), len(headers)):
            index: dict[str, list[HeaderField]] = {}
            for h in headers:
                index.setdefault(h.name.lower(), []).append(h)
            self._by_name, self._indexed = index, (id(headers), len(headers))
        return list(self._by_name.get(name.lower(), ()))

    def first_header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    @property
    def sender_domain(self) -> str:
        if not self.mail_from or "@" not in self.mail_from:
            return ""
        return self.mail_from.rsplit("@", 1)[1].lower().rstrip(".")


class BodyDigest:
    """Streams body chunks into a size and a SHA-256, holding none of them."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def message_from_bytes(
    data: bytes,
    *,
    mail_from: str | None = None,
    rcpts: list[str] | None = None,
    client_address: str = "203.0.113.7",
    sasl_user: str = "",
    helo: str = "vps.example",
    queue_id: str = "TESTQUEUEID",
) -> Message:
    """Build a Message from an .eml file's bytes, as the adapter would have."""
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    parsed = BytesParser(policy=compat32).parsebytes(head + b"\n\n", headersonly=True)
    msg = Message(
        queue_id=queue_id,
        client_address=normalise_ip(client_address),
        helo=helo,
        sasl_user=sasl_user,
    )
    for name, value in parsed.raw_items():
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        msg.add_header(name, raw.lstrip())
    if mail_from is None:
        from email.utils import parseaddr

        mail_from = parseaddr(msg.first_header("From") or "")[1]
    msg.mail_from = mail_from
    for rcpt in rcpts or ["rcpt@example.org"]:
        msg.add_rcpt(rcpt)
    digest = BodyDigest()
    digest.update(body)
    msg.body_size, msg.body_digest = digest.size, digest.hexdigest()
    from relaywarden.content.stream import view_of
    from relaywarden.policy.content import ContentCaps

    msg.content = view_of(msg.headers, body, ContentCaps())
    return msg
