"""Forged and malformed headers: the AUP forbids altered or obscured headers and
assumed identities. Each finding carries evidence and a weight from
`[checks.headers.weights]`; the engine adds them up.

Everything here reads what the customer wrote, so nothing may raise on odd
bytes and evidence is truncated before it reaches a log line.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from relaywarden import domains, trace
from relaywarden.addrparse import parsed_fields
from relaywarden.checks import Check, Context, Stage
from relaywarden.message import HeaderField, Message
from relaywarden.policy.forgery import HeadersCheckSection
from relaywarden.verdict import Finding

NAME = "headers"
EVIDENCE_CHARS = 200
# RFC 5322 §3.6: at most one of each of these.
SINGLE = ("From", "Sender", "Date", "Message-ID", "Subject", "To", "Cc")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_ADDRESS_IN_NAME = re.compile(r"[^\s<>\"'@()]+@([^\s<>\"'@()]+\.[^\s<>\"'@().]+)")
_IP_LITERAL = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]|\b(\d{1,3}(?:\.\d{1,3}){3})\b")


def clip(text: str) -> str:
    return text[:EVIDENCE_CHARS]


class Findings:
    """Collects findings of this check with their weights from the policy."""

    def __init__(self, section: HeadersCheckSection) -> None:
        self.section = section
        self.items: list[Finding] = []
        self.seen: set[str] = set()

    def add(self, name: str, reason: str, **evidence: Any) -> None:
        """One finding per name: a hundred bad headers weigh what one does."""
        if name in self.seen:
            return
        self.seen.add(name)
        weight = float(getattr(self.section.weights, name.replace("-", "_")))
        self.items.append(Finding(NAME, name, weight, evidence, reason=reason))


def check_counts(msg: Message, out: Findings) -> None:
    for header in SINGLE:
        count = len(msg.header_fields(header))
        if count > 1:
            out.add("duplicate-header", "duplicated headers", header=header, count=count)
    if not msg.header_fields("From"):
        out.add("missing-from", "missing From header")


def check_date(msg: Message, now: float, out: Findings) -> None:
    dates = msg.header_values("Date")
    if not dates:
        out.add("missing-date", "missing Date header")
        return
    try:
        when = parsedate_to_datetime(dates[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        out.add("bad-date", "unparsable Date header", value=clip(dates[0]))
        return
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    skew = when.timestamp() - now
    section = out.section
    if skew > section.date_future or -skew > section.date_past:
        out.add("date-skew", "Date header far from now", value=clip(dates[0]), skew_s=int(skew))


def check_message_id(msg: Message, out: Findings) -> None:
    ids = msg.header_values("Message-ID")
    if not ids:
        out.add("missing-message-id", "missing Message-ID header")
    elif not _MESSAGE_ID.match(ids[0].strip()):
        out.add("bad-message-id", "malformed Message-ID header", value=clip(ids[0]))


def check_raw_values(msg: Message, out: Findings) -> None:
    for field in msg.headers:
        raw = field.raw
        if b"\r" in raw or b"\n" in raw or b"\x00" in raw:
            unfolded = _FOLD.sub(b" ", raw)  # a CR or LF left over is not a fold
            injected = b"\r" in unfolded or b"\n" in unfolded or b"\x00" in unfolded
        else:
            injected = False
        value = field.value  # encoded words may decode to CR, LF or NUL
        if injected or "\r" in value or "\n" in value or "\x00" in value:
            out.add("header-injection", "CR, LF or NUL inside a header", header=clip(field.name))
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                smtputf8 = "SMTPUTF8" in msg.mail_params
                out.add(
                    "invalid-utf8",
                    "invalid UTF-8 in a header",
                    header=clip(field.name),
                    smtputf8=smtputf8,
                )
        if not field.decoded.ok:
            out.add("bad-encoded-word", "undecodable encoded word", header=clip(field.name))


def _ips(text: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = []
    for literal, bare in _IP_LITERAL.findall(text):
        try:
            found.append(ipaddress.ip_address(literal or bare))
        except ValueError:
            continue
    return found


def _own_received(field: HeaderField, queue_id: str) -> bool:
    """The relay's own Received header (it carries this queue id): ours, not forged.
    Postfix 3.7 does not show it to smtpd milters; other MTAs and versions may."""
    return (
        bool(queue_id) and re.search(rf"\bid {re.escape(queue_id)}\b", field.unfolded) is not None
    )


def carries_our_token(ctx: Context) -> bool:
    """The message already passed one of our relays: it holds a token our keys made."""
    section = ctx.policy.trace
    fields = ctx.message.header_fields(section.header)
    return any(trace.verify(f.unfolded, section) is not None for f in fields[:5])


def check_received(ctx: Context, out: Findings) -> None:
    relay = ctx.policy.relay
    # Mail that passed this relay, reached a customer's server and is sent on
    # again names the relay in its Received headers honestly; our token proves it.
    ours = carries_our_token(ctx)
    hostnames = set(relay.hostnames)
    received = ctx.message.header_fields("Received")
    if received and _own_received(received[0], ctx.message.queue_id):
        received = received[1:]
    for field in received:
        trace = field.unfolded.rsplit(";", 1)[0]
        words = {w.strip(".").lower() for w in re.split(r"[\s()\[\]<>;=]+", trace)}
        ips = _ips(trace)
        claimed = sorted(words & hostnames) + [
            str(ip) for ip in ips if any(ip in net for net in relay.parsed_networks)
        ]
        if claimed and not ours:
            out.add(
                "forged-received", "forged Received header", claims=claimed[:5], value=clip(trace)
            )
        reserved = [str(ip) for ip in ips if any(ip in n for n in out.section.parsed_reserved)]
        if reserved:
            out.add("reserved-received", "Received from a reserved network", ips=reserved[:5])


def _from_addresses(ctx: Context) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox of the From fields that parsed;
    an ambiguous From is the addresses check's finding, not a reason to look away."""
    cap = ctx.policy.checks.addresses.max_header_bytes
    return [p for parsed in parsed_fields(ctx.message, "From", cap) for p in parsed.addresses]


def _brand_names(brands: list[str]) -> dict[str, str]:
    return _brand_labels(tuple(brands))


@functools.lru_cache(maxsize=16)  # one entry per policy generation in practice
def _brand_labels(brands: tuple[str, ...]) -> dict[str, str]:
    """Brand label ("paypal") → organisational domain; short labels are too common to match."""
    out = {}
    for brand in brands:
        org = domains.org_domain(brand)
        label = org.split(".", 1)[0]
        if len(label) >= 4:
            out[label] = org
    return out


def check_display_names(ctx: Context, pairs: list[tuple[str, str]], out: Findings) -> None:
    brands = _brand_names(ctx.policy.brands.protected)
    for display, address in pairs:
        org = domains.org_domain(domains.domain_of(address))
        for match in _ADDRESS_IN_NAME.finditer(display):
            if domains.org_domain(match.group(1)) != org:
                out.add(
                    "display-name-address",
                    "address of another domain in the display name",
                    display=clip(display),
                    address=clip(address),
                )
        squashed = re.sub(r"[\W_]+", "", display.casefold())
        for label, brand_org in brands.items():
            if label in squashed and org != brand_org:
                out.add(
                    "display-name-brand",
                    "protected brand in the display name",
                    display=clip(display),
                    brand=brand_org,
                    address=clip(address),
                )


def check_reply_to(ctx: Context, pairs: list[tuple[str, str]], out: Findings) -> None:
    if len(pairs) != 1:
        return
    from_org = domains.org_domain(domains.domain_of(pairs[0][1]))
    guarded = domains.org_domains(ctx.policy.brands.protected) | domains.org_domains(
        ctx.sender.owned_domains
    )
    if from_org not in guarded:
        return
    cap = ctx.policy.checks.addresses.max_header_bytes
    for parsed in parsed_fields(ctx.message, "Reply-To", cap):
        for _, address in parsed.addresses:
            reply_org = domains.org_domain(domains.domain_of(address))
            if address and reply_org != from_org:
                out.add(
                    "reply-to-elsewhere",
                    "Reply-To another organisation",
                    from_domain=from_org,
                    reply_to=clip(address),
                )


def run(ctx: Context) -> list[Finding]:
    section = ctx.policy.checks.headers
    if not section.enabled:
        return []
    msg = ctx.message
    out = Findings(section)
    check_counts(msg, out)
    pairs = _from_addresses(ctx)
    single_from = len(msg.header_fields("From")) == 1  # several From: duplicate-header's
    if single_from and len(pairs) > 1 and not msg.header_fields("Sender"):
        out.add(
            "multiple-from-without-sender", "several From addresses and no Sender", count=len(pairs)
        )
    check_date(msg, ctx.now, out)
    check_message_id(msg, out)
    check_raw_values(msg, out)
    check_received(ctx, out)
    check_display_names(ctx, pairs, out)
    check_reply_to(ctx, pairs, out)
    return out.items


CHECK = Check(NAME, Stage.EOM, run)
