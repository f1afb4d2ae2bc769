"""A held message made safe to look at: every part as text, every attachment listed.

The reviewer sees what the recipients would see, never rendered: each text/plain
part as it is, each text/html part converted to text by a real HTML parser
(selectolax/lexbor: linear time, no regular expressions), with every link shown
as its text *and its real target*; attachments are listed with their declared
type and the type their first bytes show (`filetype`); right-to-left overrides,
zero-width and other invisible characters are shown as markers like [RLO].

Work is bounded before it starts: at most `max_bytes` of the message are
parsed, at most MAX_PARTS parts walked, header values capped before decoding.
The desk runs `build_preview` in a worker process with a time limit
(`PreviewWorker`), so a hostile message cannot hold the web server's GIL.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import threading
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from email.parser import BytesParser
from email.policy import compat32
from pathlib import PurePosixPath

import filetype
from selectolax.lexbor import LexborHTMLParser

from relaywarden.message import decode_header_value
from relaywarden.safetext import has_invisible, sanitise, visible

MAX_HEADERS_SHOWN = 100
MAX_HEADER_CHARS = 1000
MAX_PARTS = 100  # MIME parts walked; the rest are counted, not read
MAX_LINKS = 200  # links listed per HTML part
RISKY_SUFFIXES = {
    ".exe", ".scr", ".com", ".bat", ".cmd", ".pif", ".js", ".jse", ".vbs", ".vbe", ".wsf",
    ".hta", ".msi", ".jar", ".lnk", ".iso", ".img", ".ps1", ".docm", ".xlsm", ".cpl",
}  # fmt: skip


@dataclass(frozen=True)
class PartText:
    content_type: str  # "text/plain" or "text/html"
    text: str  # safe text: invisible characters shown as markers
    links: list[tuple[str, str]] = field(default_factory=list)  # (shown text, real target)


@dataclass(frozen=True)
class Attachment:
    filename: str  # with invisible characters shown as markers
    declared: str  # the Content-Type the sender wrote
    detected: str  # what the bytes are, or "unknown"
    size: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    headers: list[tuple[str, str]]
    text: str  # every text part one after the other, as shown
    truncated: bool
    html_only: bool
    parts: list[PartText] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was cut or could not be read


def _decode_part(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _as_text(part: EmailMessage, payload: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name: still show something
        return payload.decode("utf-8", errors="replace")


def html_to_text(markup: str) -> tuple[str, list[tuple[str, str]]]:
    """The text a reader sees, links inline as `text [-> target]`, and the links."""
    tree = LexborHTMLParser(markup)
    tree.strip_tags(["script", "style", "noscript", "template", "head", "object", "embed"])
    links: list[tuple[str, str]] = []
    for node in tree.css("a[href], area[href]"):
        target = (node.attributes.get("href") or "").strip()
        shown = " ".join(node.text(separator=" ").split())
        if len(links) < MAX_LINKS:
            links.append((visible(shown[:300], keep=""), visible(target[:2000], keep="")))
        node.insert_after(f" [-> {target[:2000]}]")
    for node in tree.css("img[alt]"):
        node.insert_after(f" [image: {node.attributes.get('alt') or ''}]")
    for node in tree.css("br, p, div, li, tr, h1, h2, h3, h4, h5, h6, table, blockquote"):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(separator="") if root is not None else ""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line), links


def _attachment(part: EmailMessage, payload: bytes) -> Attachment:
    raw_name = part.get_filename() or ""
    name = decode_header_value(raw_name[:1000].encode("utf-8", "surrogateescape"))
    declared = part.get_content_type()
    kind = filetype.guess(payload[:8192]) if payload else None
    detected = kind.mime if kind is not None else "unknown"
    warnings = []
    if has_invisible(name):
        warnings.append("the name hides characters (shown as markers)")
    shown_order = name.replace("\u202e", "").replace("\u202d", "")
    suffixes = {s.lower() for s in PurePosixPath(shown_order).suffixes}
    if suffixes & RISKY_SUFFIXES or (kind is not None and kind.extension in ("exe", "elf")):
        warnings.append("executable or macro content")
    if kind is not None and kind.mime != declared:
        warnings.append(f"declared {declared} but the content is {kind.mime}")
    return Attachment(visible(name, keep="") or "(no name)", declared, detected, len(payload),
                      warnings)  # fmt: skip


def _walk(parsed: EmailMessage) -> tuple[list[PartText], list[Attachment], list[str]]:
    parts: list[PartText] = []
    attachments: list[Attachment] = []
    notes: list[str] = []
    seen = 0
    for part in parsed.walk():
        if part.is_multipart():
            continue
        seen += 1
        if seen > MAX_PARTS:
            continue
        kind = part.get_content_type()
        payload = _decode_part(part)
        named = part.get_filename() is not None
        if part.get_content_disposition() == "attachment" or named or not kind.startswith("text/"):
            attachments.append(_attachment(part, payload))
        elif kind == "text/html":
            text, links = html_to_text(_as_text(part, payload))
            parts.append(PartText(kind, visible(text), links))
        else:
            parts.append(PartText(kind, visible(_as_text(part, payload).replace("\r\n", "\n"))))
    if seen > MAX_PARTS:
        notes.append(f"{seen} parts; only the first {MAX_PARTS} are shown")
    return parts, attachments, notes


def build_preview(
    raw: bytes, max_chars: int, max_bytes: int = 1 << 20, total: int | None = None
) -> Preview:
    notes = []
    size = len(raw) if total is None else total
    if size > max_bytes:
        notes.append(f"message of {size} bytes: only the first {max_bytes} were read")
        raw = raw[:max_bytes]
    parsed = BytesParser(policy=compat32).parsebytes(raw)
    headers = []
    for name, value in list(parsed.raw_items())[:MAX_HEADERS_SHOWN]:
        text = value if isinstance(value, str) else str(value)
        # Capped before decoding: RFC 2047 decoding is not linear in the worst case.
        decoded = decode_header_value(
            text[: MAX_HEADER_CHARS * 4].encode("utf-8", "surrogateescape")
        )
        headers.append(
            (sanitise(name, 100), visible(sanitise_keep(decoded), keep="")[:MAX_HEADER_CHARS])
        )
    try:
        parts, attachments, more = _walk(parsed)
    except Exception:  # a malformed MIME structure must not hide the headers
        parts, attachments, more = [], [], ["the body could not be decoded"]
    notes += more
    shown = "\n\n".join(
        p.text if len(parts) == 1 else f"--- {p.content_type} part ---\n{p.text}" for p in parts
    )
    html_only = bool(parts) and all(p.content_type == "text/html" for p in parts)
    return Preview(
        headers,
        shown[:max_chars],
        len(shown) > max_chars,
        html_only,
        [PartText(p.content_type, p.text[:max_chars], p.links) for p in parts],
        attachments,
        notes,
    )


def sanitise_keep(text: str) -> str:
    """One line, whitespace collapsed, but format characters kept (to be shown)."""
    return " ".join(text.split())


class PreviewTimeout(Exception):
    pass


class PreviewWorker:
    """Builds previews in a separate process, each within `timeout` seconds.

    A process (not a thread) so parsing never holds the web server's GIL; a
    preview that overruns has its worker killed and a fresh one started.
    """

    def __init__(self, timeout: float, processes: int = 1):
        self.timeout = timeout
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: multiprocessing.pool.Pool | None = None

    def _get(self) -> multiprocessing.pool.Pool:
        with self._lock:
            if self._pool is None:
                # spawn: a fork of a threaded server could inherit held locks.
                ctx = multiprocessing.get_context("spawn")
                self._pool = ctx.Pool(self.processes, maxtasksperchild=100)
            return self._pool

    def build(self, raw: bytes, max_chars: int, max_bytes: int) -> Preview:
        pool = self._get()
        args = (raw[:max_bytes], max_chars, max_bytes, len(raw))
        pending = pool.apply_async(build_preview, args)
        try:
            preview: Preview = pending.get(self.timeout)
        except multiprocessing.TimeoutError:
            self._kill(pool)
            raise PreviewTimeout(f"the preview took longer than {self.timeout:g}s") from None
        return preview

    def _kill(self, pool: multiprocessing.pool.Pool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.terminate()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
