"""Decoding one collected part: transfer encoding, charset, HTML to text, URLs.

Each step is bounded by its input (already capped by the stream) and never
raises: what went wrong is returned as problem names for findings.
"""

from __future__ import annotations

import binascii
import codecs
import re
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser

from relaywarden.domains import org_domain

MAX_URL = 2048
# A URL in running text: scheme or www., up to a delimiter no URL contains bare.
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'()\[\]{}\\^`|]{1,2048}")
_WHITESPACE = b" \t\r\n"
_B64_ALPHABET = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NOT_B64 = bytes(c for c in range(256) if c not in _B64_ALPHABET)  # bytes.translate deletes
_HOST = re.compile(r"^[a-z0-9.-]{1,253}$")


def transfer_decode(raw: bytes, cte: str) -> tuple[bytes, list[str]]:
    cte = cte.strip().lower()
    if cte == "base64":
        compact = raw.translate(None, _WHITESPACE)
        try:  # well-formed: one strict pass in C
            return binascii.a2b_base64(compact, strict_mode=True), []
        except (binascii.Error, ValueError):
            pass
        # Letters outside the alphabet, data after the padding or a cut-off tail:
        # decode what forms whole quadruplets of the alphabet, and say so.
        clean = compact.translate(None, _NOT_B64)
        try:
            return binascii.a2b_base64(clean[: len(clean) // 4 * 4]), ["bad-transfer-encoding"]
        except (binascii.Error, ValueError):
            return b"", ["bad-transfer-encoding"]
    if cte == "quoted-printable":
        return binascii.a2b_qp(raw), []
    return raw, []


def charset_decode(data: bytes, charset: str) -> tuple[str, list[str]]:
    name = charset.strip().strip('"').lower()
    if not name:  # undeclared: UTF-8 where valid, else Latin-1 (what mailers really send)
        try:
            return data.decode("utf-8"), []
        except UnicodeDecodeError:
            return data.decode("latin-1"), []
    try:
        if not codecs.lookup(name)._is_text_encoding:
            raise LookupError(name)
    except LookupError:
        return data.decode("utf-8", "replace"), ["unknown-charset"]
    try:
        return data.decode(name), []
    except UnicodeDecodeError:
        return data.decode(name, "replace"), ["charset-mismatch"]
    except Exception:  # a codec's own failure on hostile input: still text, still a finding
        return data.decode("utf-8", "replace"), ["charset-mismatch"]


def html_to_text(html: str) -> tuple[str, list[str]]:
    """The visible text of an HTML document and the URLs of its href/src attributes."""
    tree = LexborHTMLParser(html)
    links = []
    for node in tree.css("[href], [src]"):
        attrs = node.attributes
        for name in ("href", "src"):
            value = attrs.get(name)
            if value and value.lower().lstrip().startswith(("http://", "https://", "www.")):
                links.append(value.strip()[:MAX_URL])
    tree.strip_tags(["script", "style", "head", "noscript", "template"])
    root = tree.body or tree.root
    text = root.text(separator=" ") if root is not None else ""
    return text, links


def urls_in(text: str, limit: int) -> list[str]:
    lowered = text.lower()
    if "http" not in lowered and "www." not in lowered:
        return []  # the regex would walk every character to find nothing
    out = []
    for match in _URL.finditer(text):
        out.append(match.group(0).rstrip(".,;:!?"))
        if len(out) >= limit:
            break
    return out


def url_host(url: str) -> str:
    """The host of a URL, lower case, "" when it has none or it is malformed."""
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return ""
    return host if _HOST.match(host) and "." in host else ""


def registered_domain(host: str) -> str:
    """Registered domain per the public suffix list; an IP literal stays as it is."""
    if host.replace(".", "").isdigit():
        return host
    domain = org_domain(host)
    try:
        return domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return host
