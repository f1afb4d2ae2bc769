"""A held message made safe to look at: decoded headers and a plain-text preview.

Nothing is rendered or executed: an HTML-only message is shown as its text with
the tags removed, and the caller escapes whatever it displays.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.parser import BytesParser
from email.policy import compat32

from relaywarden.desk.index import sanitise
from relaywarden.message import decode_header_value

MAX_HEADERS_SHOWN = 100
MAX_HEADER_CHARS = 1000
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Preview:
    headers: list[tuple[str, str]]
    text: str
    truncated: bool
    html_only: bool


def _decode_part(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name: still show something
        return payload.decode("utf-8", errors="replace")


def _text(parsed: EmailMessage) -> tuple[str, bool]:
    plain, htmls = [], []
    for part in parsed.walk() if parsed.is_multipart() else [parsed]:
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            plain.append(_decode_part(part))
        elif kind == "text/html":
            htmls.append(html.unescape(_TAG.sub(" ", _decode_part(part))))
    if plain:
        return "\n\n".join(plain), False
    return "\n\n".join(htmls), bool(htmls)


def _printable(text: str) -> str:
    # Keep line structure; drop every other control character.
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())


def build_preview(raw: bytes, max_chars: int) -> Preview:
    parsed = BytesParser(policy=compat32).parsebytes(raw)
    headers = []
    for name, value in list(parsed.raw_items())[:MAX_HEADERS_SHOWN]:
        text = value if isinstance(value, str) else str(value)
        decoded = decode_header_value(text.encode("utf-8", "surrogateescape"))
        headers.append((sanitise(name, 100), sanitise(decoded, MAX_HEADER_CHARS)))
    try:
        text, html_only = _text(parsed)
    except Exception:  # a malformed MIME structure must not hide the headers
        text, html_only = "(the body could not be decoded)", False
    text = _printable(text.replace("\r\n", "\n"))
    return Preview(headers, text[:max_chars], len(text) > max_chars, html_only)
