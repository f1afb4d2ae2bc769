"""What the content checks may read of a body: bounded by the policy's caps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attachment:
    name: str  # as declared (decoded, bounded); "" when none was given
    content_type: str
    size: int  # encoded bytes on the wire


@dataclass(frozen=True)
class ContentView:
    text: str = ""  # the first text/plain part, decoded
    html_text: str = ""  # the first text/html part, as text
    urls: tuple[str, ...] = ()
    url_domains: frozenset[str] = frozenset()  # registered domains (public suffix list)
    attachments: tuple[Attachment, ...] = ()
    parts: int = 0  # MIME parts seen (counted past the cap)
    problems: tuple[str, ...] = ()  # malformed structure, bad encodings, caps reached
    scanned: int = 0  # body bytes examined
    # The body's first [content.rspamd] max_bytes as written, only when rspamd is asked.
    raw: bytes = field(default=b"", repr=False)
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def best_text(self) -> str:
        """The text a reader sees: the plain part, else the HTML part's text."""
        return self.text if self.text.strip() else self.html_text

    @property
    def kept_bytes(self) -> int:
        """Roughly what the view holds in memory (strings as UTF-8)."""
        strings = [self.text, self.html_text, *self.urls, *self.url_domains]
        strings += [a.name + a.content_type for a in self.attachments]
        return len(self.raw) + sum(len(s.encode("utf-8", "surrogatepass")) for s in strings)
