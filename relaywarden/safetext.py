"""Text from outside (messages, operators' reasons) made safe to show.

Two ways: `sanitise` drops control and format characters for a one-line field
(list columns, audit reasons at input); `visible` keeps them but names them, for
places where hiding them would hide the attack (a right-to-left override in an
attachment name, zero-width characters in a link, an ESC sequence in a reason
printed on a terminal).
"""

from __future__ import annotations

import unicodedata

# Characters that change how text reads without being seen.
_NAMED = {
    "\u200b": "ZWSP",
    "\u200c": "ZWNJ",
    "\u200d": "ZWJ",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2060": "WJ",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
    "\ufeff": "BOM",
    "\u00ad": "SHY",
}
_HIDDEN = ("Cc", "Cf", "Cs", "Co")


def sanitise(text: str | None, cap: int) -> str:
    """One line of display text: control and format characters (incl. bidi
    overrides) dropped, whitespace collapsed, length capped."""
    if not text:
        return ""
    if not (text.isascii() and text.isprintable()):  # the common case skips the slow walk
        text = "".join(
            " " if ch in "\t\r\n" else ch
            for ch in text
            if ch in "\t\r\n" or unicodedata.category(ch) not in _HIDDEN
        )
    line = " ".join(text.split())
    return line if len(line) <= cap else line[: cap - 1] + "…"


def visible(text: str, keep: str = "\n\t") -> str:
    """`text` with every invisible or control character shown as a marker like
    [RLO] or [U+0007]; characters in `keep` (line structure) stay as they are."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in keep:
            out.append(ch)
        elif ch in _NAMED:
            out.append(f"[{_NAMED[ch]}]")
        elif unicodedata.category(ch) in _HIDDEN or unicodedata.category(ch) in ("Zl", "Zp"):
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def has_invisible(text: str) -> bool:
    return visible(text, keep="") != text
