"""A streaming MIME scanner: fed the body chunk by chunk, it keeps only what the
content checks need (see `view.ContentView`) and never more than the policy's caps.

Why not `email.feedparser`: it keeps every part's payload, so a 50 MB body costs
50 MB (and 10,000 parts 10,000 Message objects). Here the only buffers are a
pending partial line (bounded), the raw bytes of the first text/plain and
text/html parts (bounded) and one part's headers (bounded); everything else is
counted and dropped. Work is linear in the bytes examined, which are capped;
bulk content is skipped with `bytes.find` for the next line starting with "--".
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32

from relaywarden.content import decode
from relaywarden.content.view import Attachment, ContentView
from relaywarden.message import HeaderField
from relaywarden.policy.content import ContentCaps

log = logging.getLogger("relaywarden.content")

MAX_PART_HEADER = 16 * 1024
MAX_BOUNDARY_LINE = 1000  # RFC 2046 boundaries are <= 70 chars; slack for whitespace
MAX_NAME = 255
_HEADERS = BytesHeaderParser(policy=compat32)
_TOP_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition")


@dataclass
class _Part:
    content_type: str = "text/plain"
    charset: str = ""
    cte: str = ""
    filename: str = ""
    attachment: bool = False
    size: int = 0
    collect: str = ""  # "plain" / "html" when this part's text is kept
    raw: bytearray = field(default_factory=bytearray)


def _describe(headers: EmailMessage) -> tuple[_Part, str]:
    """A part from its parsed headers, and its boundary when it is a multipart."""
    ctype = headers.get_content_type()
    filename = ""
    try:
        filename = (headers.get_filename() or "")[:MAX_NAME]
    except Exception:  # malformed RFC 2231 parameters: no name rather than no mail
        filename = ""
    disposition = str(headers.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    part = _Part(
        content_type=ctype[:MAX_NAME],
        charset=str(headers.get_content_charset("") or "")[:64],
        cte=str(headers.get("Content-Transfer-Encoding", ""))[:64],
        filename=filename,
        attachment=disposition == "attachment" or bool(filename),
    )
    boundary = ""
    if ctype.startswith("multipart/"):
        boundary = str(headers.get_param("boundary", "") or "")[:200]
    return part, boundary


@functools.lru_cache(maxsize=512)
def _described(header: bytes) -> tuple[_Part, str]:
    """_describe of a raw header block, parsed once: bulk mail repeats its part
    headers, and most top levels have none. The part is a template: copy it."""
    return _describe(_HEADERS.parsebytes(header + b"\r\n"))


class ContentStream:
    """Feed the body in chunks (`feed`), then `finish` for the view."""

    def __init__(self, headers: list[HeaderField], caps: ContentCaps, keep_raw: int = 0) -> None:
        self.caps = caps
        # The body's first `keep_raw` bytes as they came (for rspamd), else nothing.
        self._keep_raw = keep_raw
        self._raw = bytearray()
        self._buf = b""
        self._midline = False  # the pending data continues a line already passed on
        self._bounds: list[bytes] = []  # b"--boundary" of each open multipart, outermost first
        self._in_headers = False
        self._header = bytearray()
        self._header_overflow = False
        self._scanned = 0
        self._stopped = False
        self._problems: set[str] = set()
        self._parts = 0
        self._texts: dict[str, _Part] = {}
        self._attachments: list[Attachment] = []
        top = b"".join(
            h.name.encode("latin-1", "replace") + b": " + h.raw + b"\r\n"
            for h in headers
            if h.name.lower() in _TOP_HEADERS
        )
        self._part = self._open(top)

    # -- feeding -----------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if self._stopped:
            return
        try:
            self._feed(chunk)
        except Exception:  # a scanner bug must not cost the message: a finding instead
            log.exception("content scan failed; the view is left incomplete")
            self._stopped = True
            self._problems.add("scan-failed")
            self._buf = b""

    def _feed(self, chunk: bytes) -> None:
        if len(self._raw) < self._keep_raw:
            self._raw += chunk[: self._keep_raw - len(self._raw)]
        room = self.caps.max_scan_bytes - self._scanned
        if len(chunk) > room:
            chunk = chunk[:room]
            self._stopped = True
            self._problems.add("scan-truncated")
        self._scanned += len(chunk)
        self._buf += chunk
        self._drain(final=False)

    def finish(self) -> ContentView:
        try:
            if "scan-failed" not in self._problems:
                self._drain(final=True)
                self._close_part()
            if self._bounds:
                self._problems.add("unterminated-multipart")
            return self._view()
        except Exception:
            log.exception("content view failed; the message is judged without it")
            return ContentView(
                problems=("scan-failed",),
                parts=self._parts,
                scanned=self._scanned,
                raw=bytes(self._raw),
            )

    # -- the scanner ---------------------------------------------------------------
    def _drain(self, final: bool) -> None:
        buf, pos, end = self._buf, 0, len(self._buf)
        while pos < end:
            if self._in_headers:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if not final:
                        break
                    nl = end - 1
                self._header_line(buf[pos : nl + 1])
                pos = nl + 1
                continue
            if not self._bounds:  # a single part: everything is content
                self._content(buf[pos:])
                pos = end
                break
            if not self._midline and buf.startswith(b"--", pos):
                nl = buf.find(b"\n", pos)
                if nl < 0 and not final and end - pos <= MAX_BOUNDARY_LINE:
                    break  # wait for the rest of what may be a boundary line
                stop = end if nl < 0 else nl + 1
                line = buf[pos:stop]
                pos = stop
                if not self._boundary(line):
                    self._content(line)
                self._midline = nl < 0
                continue
            # Skip to the next line that starts with "--": C speed over bulk content.
            nxt = buf.find(b"\n--", pos)
            if nxt >= 0:
                self._content(buf[pos : nxt + 1])
                pos, self._midline = nxt + 1, False
                continue
            last = buf.rfind(b"\n", pos)
            if final:
                stop = end
            elif last >= 0:
                stop = last + 1
            elif end - pos > MAX_BOUNDARY_LINE:
                stop = end  # a long line: pass it on, the rest of it follows
            else:
                break
            self._content(buf[pos:stop])
            self._midline = not buf.endswith(b"\n", 0, stop)
            pos = stop
        self._buf = buf[pos:]

    def _boundary(self, line: bytes) -> bool:
        """Handle a line that may be a boundary of an open multipart; True if it was."""
        text = line.rstrip()
        for depth in range(len(self._bounds) - 1, -1, -1):
            mark = self._bounds[depth]
            if not text.startswith(mark):
                continue
            rest = text[len(mark) :]
            if rest not in (b"", b"--"):
                continue
            if depth < len(self._bounds) - 1:
                self._problems.add("unterminated-multipart")
            del self._bounds[depth + 1 :]
            self._close_part()
            if rest == b"--":
                self._bounds.pop()
                self._part = _Part(content_type="epilogue")
            else:
                self._start_headers()
            return True
        return False

    def _start_headers(self) -> None:
        self._in_headers = True
        self._header = bytearray()
        self._header_overflow = False

    def _header_line(self, line: bytes) -> None:
        if line in (b"\r\n", b"\n") or (not line.strip() and line.endswith(b"\n")):
            self._in_headers = False
            self._part = self._open(bytes(self._header))
            return
        if len(self._header) + len(line) > MAX_PART_HEADER:
            if not self._header_overflow:
                self._problems.add("part-header-too-long")
            self._header_overflow = True
            return
        self._header += line

    def _open(self, header: bytes) -> _Part:
        """A new part from its header block: decide what of it to keep."""
        self._parts += 1
        if self._parts > self.caps.max_parts:
            self._problems.add("too-many-parts")
            return _Part(content_type="uncounted")
        template, boundary = _described(header)
        part = replace(template, raw=bytearray())
        if part.content_type.startswith("multipart/"):
            if not boundary:
                self._problems.add("missing-boundary")
            elif len(self._bounds) >= self.caps.max_depth:
                self._problems.add("nesting-too-deep")
            else:
                self._bounds.append(b"--" + boundary.encode("utf-8", "replace"))
            return part
        kind = {"text/plain": "plain", "text/html": "html"}.get(part.content_type, "")
        if kind and not part.attachment and kind not in self._texts:
            part.collect = kind
            self._texts[kind] = part
        return part

    def _content(self, data: bytes) -> None:
        part = self._part
        part.size += len(data)
        if part.collect:
            # Encoded text is at most ~3x its decoded size (quoted-printable).
            room = 3 * self.caps.max_text_bytes + 4 - len(part.raw)
            if room > 0:
                part.raw += data[:room]

    def _close_part(self) -> None:
        part = self._part
        if part.collect or part.content_type in ("epilogue", "uncounted"):
            return
        if part.content_type.startswith("multipart/"):
            return
        kept = len(self._attachments) < self.caps.max_attachments
        if kept and (part.attachment or not part.content_type.startswith("text/")):
            self._attachments.append(Attachment(part.filename, part.content_type, part.size))

    # -- the view -----------------------------------------------------------------
    def _text(self, kind: str) -> tuple[str, list[str], list[str]]:
        """A kept part's text, what went wrong decoding it, and its href/src URLs."""
        part = self._texts.get(kind)
        if part is None:
            return "", [], []
        data, problems = decode.transfer_decode(bytes(part.raw), part.cte)
        part.raw = bytearray()
        text, more = decode.charset_decode(data[: self.caps.max_text_bytes], part.charset)
        links: list[str] = []
        if kind == "html":
            text, links = decode.html_to_text(text)
        return text[: self.caps.max_text_bytes], [*problems, *more], links

    def _view(self) -> ContentView:
        plain, plain_problems, _ = self._text("plain")
        html, html_problems, links = self._text("html")
        problems = self._problems.union(plain_problems, html_problems)
        limit = self.caps.max_urls
        found = [*links, *decode.urls_in(plain, limit), *decode.urls_in(html, limit)]
        urls = list(dict.fromkeys(found))[:limit]
        hosts = {decode.url_host(u) for u in urls}
        domains = frozenset(decode.registered_domain(h) for h in hosts if h)
        return ContentView(
            text=plain,
            html_text=html,
            urls=tuple(urls),
            url_domains=domains,
            attachments=tuple(self._attachments),
            parts=self._parts,
            problems=tuple(sorted(problems)),
            scanned=self._scanned,
            raw=bytes(self._raw),
        )


def view_of(headers: list[HeaderField], body: bytes, caps: ContentCaps) -> ContentView:
    """The view of a whole body at once (tests, replays): the same scanner, one chunk."""
    stream = ContentStream(headers, caps)
    for start in range(0, len(body), 65536):
        stream.feed(body[start : start + 65536])
    return stream.finish()
