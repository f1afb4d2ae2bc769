"""From, Sender and Reply-To parsed once per message, from the raw header, in
linear time, refusing to guess.

Order matters: the RFC 5322 structure (quotes, comments, angle brackets,
groups, commas) is read from the header as written, and only then are RFC 2047
encoded words in display names decoded. Decoding first turns
`=?utf-8?q?PayPal=2C_Inc=2E?= <service@paypal.com>` into two "addresses" and
lets a spoof hide behind the ambiguity; a raw `,` or `<` inside an encoded word
is structure, an encoded one is text.

Why our own tokenizer: the standard library's header-registry parser is
quadratic (a 30 KB From of comments took 13.8 s) and `getaddresses` silently
reads some malformed lists as another address (CVE-2023-27043). This is one
left-to-right pass over the characters plus one over the tokens.

An ambiguous header is reported as such, with every address it could mean
(`domains`), so the other checks still judge them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from relaywarden.encwords import decode_words
from relaywarden.message import Message, decode_bytes

MAX_CANDIDATE_DOMAINS = 10
# Anything shaped like "@domain" in an ambiguous header: each reading counts.
_AT_DOMAIN = re.compile(r"@\s*([^\s@<>()\[\]\",;:\\]+(?:\.[^\s@<>()\[\]\",;:\\.]+)+)")


@dataclass(frozen=True)
class Mailbox:
    display: str  # decoded (RFC 2047) display name
    address: str  # addr-spec as written: local@domain


@dataclass(frozen=True)
class ParsedAddresses:
    mailboxes: tuple[Mailbox, ...] = ()
    ambiguous: bool = False
    problem: str = ""
    # Domains of every address the header could be read as (ambiguous headers too).
    domains: tuple[str, ...] = ()
    oversized: bool = False
    size: int = 0

    @property
    def addresses(self) -> tuple[tuple[str, str], ...]:
        return tuple((m.display, m.address) for m in self.mailboxes)


# -- tokens ------------------------------------------------------------------
# kind: "atom", "qs" (quoted string, unescaped), "lit" (domain literal), or the
# special character itself ("<", ">", "@", ",", ":", ";", ".").
Token = tuple[str, str]


@dataclass
class _Scan:
    tokens: list[Token] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# One regex pass: every alternative is possessive or bounded, so no input makes
# it backtrack (an unterminated quote is one match to the end, not n retries).
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]++)
    | (?P<atom>[^ \t\r\n()<>\[\]:;@\\,."]++)
    | "(?P<qs>(?:[^"\\]++|\\.?)*+)(?P<qs_end>"?)
    | \[(?P<lit>(?:[^\[\]\\]++|\\.?)*+)(?P<lit_end>]?)
    | (?P<special>[<>@,:;.])
    | (?P<open>\()
    | (?P<stray>[)\]\\])
    """,
    re.VERBOSE | re.DOTALL,
)
_COMMENT_PART = re.compile(r"[^()\\]++|\\.?|[()]", re.DOTALL)
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)


def _skip_comment(text: str, i: int) -> tuple[int, bool]:
    """From just after "(" to after its matching ")" (comments nest)."""
    depth = 1
    for m in _COMMENT_PART.finditer(text, i):
        part = m.group()
        if part == "(":
            depth += 1
        elif part == ")":
            depth -= 1
            if depth == 0:
                return m.end(), True
    return len(text), False


def _unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text


def tokenize(text: str) -> _Scan:
    scan = _Scan()
    tokens, problems = scan.tokens, scan.problems
    i, n = 0, len(text)
    while i < n:
        m = _TOKEN.match(text, i)
        assert m is not None  # the alternatives cover every character
        i = m.end()
        kind = m.lastgroup
        if kind == "atom":
            tokens.append(("atom", m.group("atom")))
        elif kind == "special":
            c = m.group("special")
            tokens.append((c, c))
        elif kind in ("qs", "qs_end"):
            tokens.append(("qs", _unescape(m.group("qs"))))
            if not m.group("qs_end"):
                problems.append("unterminated quoted string")
        elif kind in ("lit", "lit_end"):
            tokens.append(("lit", _unescape(m.group("lit"))))
            if not m.group("lit_end"):
                problems.append("unterminated domain literal")
        elif kind == "open":
            i, closed = _skip_comment(text, i)
            if not closed:
                problems.append("unterminated comment")
        elif kind == "stray":
            problems.append(f"stray {m.group('stray')!r}")
    return scan


# -- structure ----------------------------------------------------------------
def _addr_spec(tokens: list[Token], problems: list[str]) -> str | None:
    ats = [i for i, (kind, _) in enumerate(tokens) if kind == "@"]
    if len(ats) != 1:
        problems.append("no address" if not ats else "more than one @ in an address")
        return None
    local_t, domain_t = tokens[: ats[0]], tokens[ats[0] + 1 :]
    if not local_t or not domain_t:
        problems.append("empty local part or domain")
        return None
    local = []
    for kind, value in local_t:
        if kind == "qs":
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            local.append(f'"{escaped}"')
        elif kind in ("atom", "."):
            local.append(value)
        else:
            problems.append(f"{value!r} in a local part")
            return None
    if len(domain_t) == 1 and domain_t[0][0] == "lit":
        return "".join(local) + "@[" + domain_t[0][1] + "]"
    if any(kind not in ("atom", ".") for kind, _ in domain_t):
        problems.append("malformed domain")
        return None
    return "".join(local) + "@" + "".join(v for _, v in domain_t)


def _phrase(tokens: list[Token], problems: list[str]) -> str:
    words: list[str] = []
    for kind, value in tokens:
        if kind in ("atom", "qs"):
            words.append(value)
        elif kind == "." and words:
            words[-1] += "."  # obs-phrase: "John Q. Public"
        else:
            problems.append(f"{value!r} in a display name")
    return decode_words(" ".join(words)).text


def _mailbox(tokens: list[Token], problems: list[str]) -> Mailbox | None:
    kinds = [k for k, _ in tokens]
    if "<" not in kinds:
        address = _addr_spec(tokens, problems)
        return Mailbox("", address) if address else None
    start = kinds.index("<")
    if ">" not in kinds[start:]:
        problems.append("unterminated angle address")
        return None
    end = start + kinds[start:].index(">")
    display = _phrase(tokens[:start], problems)
    inner = tokens[start + 1 : end]
    if tokens[end + 1 :]:
        problems.append("text after an angle address")
    if any(k in ("<", ">") for k in kinds[start + 1 : end] + kinds[end + 1 :]):
        problems.append("nested or repeated angle brackets")
    route = [i for i, (kind, _) in enumerate(inner) if kind == ":"]
    if route:
        problems.append("obsolete source route")
        inner = inner[route[-1] + 1 :]
    address = _addr_spec(inner, problems)
    return Mailbox(display, address) if address else None


def _structure(tokens: list[Token], problems: list[str]) -> list[Mailbox]:
    """address-list = (mailbox / group) *("," ...), one pass over the tokens."""
    out: list[Mailbox] = []
    current: list[Token] = []
    in_angle = in_group = False

    def finish(allow_empty: bool) -> None:
        if not current:
            if not allow_empty:
                problems.append("empty list element")
            return
        mailbox = _mailbox(current, problems)
        if mailbox is not None:
            out.append(mailbox)
        current.clear()

    last = ""
    for token in tokens:
        kind = token[0]
        last = kind
        if kind == "<":
            if in_angle:
                problems.append("nested or repeated angle brackets")
            in_angle = True
        elif kind == ">":
            if not in_angle:
                problems.append("stray '>'")
            in_angle = False
        if in_angle or kind in ("<", ">"):
            current.append(token)
        elif kind == ",":
            finish(allow_empty=False)
        elif kind == ":" and not in_group:
            _phrase(current, problems)  # a group's name: a phrase, nothing else
            current.clear()
            in_group = True
        elif kind == ";" and in_group:
            finish(allow_empty=True)
            in_group = False
        elif kind in (":", ";"):
            problems.append(f"stray {kind!r}")
        else:
            current.append(token)
    if in_angle:
        problems.append("unterminated angle address")
    if in_group:
        problems.append("unterminated group")
    if current or last == ",":
        finish(allow_empty=False)  # a trailing comma leaves an empty element
    return out


def _candidate_domains(text: str, mailboxes: list[Mailbox], ambiguous: bool) -> tuple[str, ...]:
    found = [m.address.rsplit("@", 1)[1] for m in mailboxes]
    if ambiguous:  # every reading: "@domain" anywhere in the header as written
        found += [m.group(1) for m in _AT_DOMAIN.finditer(text)]
    out: dict[str, None] = {}
    for domain in found:
        domain = domain.strip().rstrip(".").lower()
        if domain and not domain.startswith("["):
            out[domain] = None
        if len(out) >= MAX_CANDIDATE_DOMAINS:
            break
    return tuple(out)


def parse_address_list(value: str | bytes, header: str = "From") -> ParsedAddresses:
    """One address header's value, raw (encoded words as written)."""
    if isinstance(value, bytes):
        value = decode_bytes(value)
    text = value.replace("\r", "").replace("\n", "")
    scan = tokenize(text)
    problems = scan.problems
    mailboxes = _structure(scan.tokens, problems)
    ambiguous = bool(problems)
    return ParsedAddresses(
        tuple(mailboxes),
        ambiguous,
        f"{header}: {problems[0]}" if problems else "",
        _candidate_domains(text, mailboxes, ambiguous),
        size=len(value),
    )


# -- once per message ---------------------------------------------------------
NOTE = "addrparse"  # Message.notes key of the parses


def parsed_fields(msg: Message, header: str, cap: int) -> list[ParsedAddresses]:
    """Every `header` field of the message parsed, once per message: the first
    caller parses, later checks get the same result. Above `cap` bytes a field is
    not parsed at all (`oversized`)."""
    cache: dict[tuple[str, int], list[ParsedAddresses]] = msg.notes.setdefault(NOTE, {})
    key = (header.lower(), cap)
    if key not in cache:
        out = []
        for f in msg.header_fields(header):
            if len(f.raw) > cap:
                out.append(
                    ParsedAddresses(
                        ambiguous=True,
                        problem=f"{header} header of {len(f.raw)} bytes",
                        oversized=True,
                        size=len(f.raw),
                    )
                )
            else:
                out.append(parse_address_list(f.raw, header))
        cache[key] = out
    return cache[key]
