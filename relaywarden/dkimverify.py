"""DKIM signatures verified for the DMARC check (dkimpy), through the message's
own DNS session, so key lookups count against its budget and fail mode.

The body is kept only for messages that carry a DKIM-Signature header, in a
spooled temporary file (memory up to `SPOOL_IN_MEMORY`, disk beyond), and only
up to `[checks.sender] dkim_max_body`: a longer body is not verified (no DKIM
pass; DMARC is then judged on SPF, as before). Verification itself runs only
when a From domain asks for DMARC enforcement and SPF does not pass.
"""

from __future__ import annotations

import logging
import re
import tempfile
from typing import Any

import dkim

from relaywarden.dns import DnsSession
from relaywarden.errors import DnsError
from relaywarden.message import Message

BODY_NOTE = "dkim-body"  # Message.notes: the BodySpool, set by the adapter
RESULT_NOTE = "dkim"  # Message.notes: ((signing domain, valid), ...), computed once
MAX_SIGNATURES = 5  # verified per message; more is someone's game
SPOOL_IN_MEMORY = 256 * 1024
_LONE_LF = re.compile(rb"(?<!\r)\n")
log = logging.getLogger("relaywarden.dkim")


class BodySpool:
    """The body of one message, bounded: beyond `limit` bytes it stops keeping it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.overflowed = False
        # Lives as long as the message; the adapter closes it at the next reset.
        self._file: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.overflowed or self.size > self.limit:
            if not self.overflowed:
                self.overflowed = True
                self._file.close()
            return
        self._file.write(chunk)

    def read(self) -> bytes | None:
        if self.overflowed:
            return None
        self._file.seek(0)
        data: bytes = self._file.read()
        return data

    def close(self) -> None:
        self._file.close()


def has_signature(message: Message) -> bool:
    return bool(message.header_fields("DKIM-Signature"))


def _raw_message(message: Message, body: bytes) -> bytes:
    head = b"".join(
        f.name.encode("ascii", "replace") + b": " + _LONE_LF.sub(b"\r\n", f.raw) + b"\r\n"
        for f in message.headers
    )
    return head + b"\r\n" + body


def signatures(message: Message, session: DnsSession) -> tuple[tuple[str, bool], ...]:
    """(d= domain, verified) of each DKIM signature, at most MAX_SIGNATURES,
    computed once per message. A DNS failure raises DnsError (the caller's fail mode)."""
    cached = message.notes.get(RESULT_NOTE)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    spool = message.notes.get(BODY_NOTE)
    body = spool.read() if isinstance(spool, BodySpool) else None
    results: list[tuple[str, bool]] = []
    if body is not None and has_signature(message):
        results = _verify(_raw_message(message, body), session)
    message.notes[RESULT_NOTE] = tuple(results)
    return tuple(results)


def _verify(raw: bytes, session: DnsSession) -> list[tuple[str, bool]]:
    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        records = [r for r in session.txt(text.rstrip(".")) if "p=" in r]
        return records[0].encode() if records else None

    try:
        checker = dkim.DKIM(raw, minkey=1024)
    except Exception:  # unparsable for dkimpy: no signature can pass
        return []
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    out = []
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            ok = bool(checker.verify(idx, dnsfunc=dnsfunc))
        except DnsError:
            raise
        except Exception as exc:  # a malformed signature or key fails, nothing more
            log.debug("DKIM signature %d not verified: %s", idx, exc)
            ok = False
        domain = checker.domain.decode("ascii", "replace") if checker.domain else ""
        out.append((domain.lower(), ok))
    return out
