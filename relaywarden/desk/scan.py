"""`relaywarden quarantine scan`: the quarantine index and the hold queue agree again.

A held message the index does not know (the index entry expired after
`retention`, Redis lost its data, a message held by hand with `postsuper -h`)
is filed from what Postfix says about it (`postqueue -j`) and its headers
(`postcat`): sender, recipients, Subject, From, and the client address of the
relay's own Received header. An entry whose message left the hold queue
without the desk (expired, released by hand) is marked "gone". Every entry of
this relay is filed again in the per-VPS/customer/finding indexes.

If the hold queue cannot be read, the scan stops and says so: nothing is ever
marked gone because of an error.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from relaywarden.desk import index
from relaywarden.desk.index import Entry
from relaywarden.desk.postfix import PostfixError, PostfixTools, QueueIdError, check_queue_id
from relaywarden.identity import vps_key
from relaywarden.message import decode_header_value
from relaywarden.policy.desk import QuarantineSection
from relaywarden.safetext import sanitise
from relaywarden.store import RedisStore

log = logging.getLogger("relaywarden.desk.scan")
_RECEIVED_FROM = re.compile(r"\(\s*[^()\[\]]*\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
HEADER_BYTES = 64 * 1024  # of postcat's output read for the headers


class QueueUnreadable(Exception):
    """The hold queue could not be read: the scan changed nothing."""


@dataclass
class ScanReport:
    held: int = 0
    known: int = 0
    added: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # held, but postcat failed


def _client(headers: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for value in headers.get_all("Received", [])[:1]:  # the relay's own, on top
        match = _RECEIVED_FROM.search(str(value))
        if match:
            try:
                return ipaddress.ip_address(match.group(1))
            except ValueError:
                return None
    return None


def _entry_for(
    row: dict[str, Any], tools: PostfixTools, cfg: QuarantineSection, report: ScanReport
) -> Entry:
    qid = str(row["queue_id"])
    recipients = [str(r.get("address", "")) for r in row.get("recipients", []) or []]
    subject = from_header = ""
    vps = "unknown"
    try:
        raw = tools.content(qid)[:HEADER_BYTES]
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        subject = decode_header_value(str(headers.get("Subject", "")).encode("utf-8", "replace"))
        from_header = decode_header_value(str(headers.get("From", "")).encode("utf-8", "replace"))
        client = _client(headers)
        if client is not None:
            vps = vps_key(client)
    except PostfixError as exc:
        log.warning("scan: postcat %s: %s", qid, exc)
        report.unreadable.append(qid)
    return Entry(
        queue_id=qid,
        relay=cfg.relay,
        time=float(row.get("arrival_time") or time.time()),
        ref="",
        customer=None,
        vps=vps,
        sasl_user="",
        sender=sanitise(str(row.get("sender", "")), cfg.max_text),
        recipients=[sanitise(r, cfg.max_text) for r in recipients[: cfg.max_recipients]],
        recipient_total=len(recipients),
        subject=sanitise(subject, cfg.max_text),
        from_header=sanitise(from_header, cfg.max_text),
        score=0.0,
        findings=[{"check": "desk", "name": "found-by-scan", "score": 0.0,
                   "evidence": {"note": "held without an index entry; filed by quarantine scan"}}],
    )  # fmt: skip


def scan(store: RedisStore, tools: PostfixTools, cfg: QuarantineSection) -> ScanReport:
    try:
        rows = tools.hold_entries()
    except PostfixError as exc:
        raise QueueUnreadable(f"could not read the hold queue: {exc}") from None
    held = {}
    for row in rows:
        try:
            held[check_queue_id(str(row.get("queue_id")))] = row
        except QueueIdError:
            continue
    report = ScanReport(held=len(held))
    mine = [e for e in _all_entries(store) if e.relay == cfg.relay]
    report.known = len(mine)
    known_ids = {e.queue_id for e in mine}
    added = [_entry_for(row, tools, cfg, report) for qid, row in held.items()
             if qid not in known_ids]  # fmt: skip
    current = []
    for entry in mine:
        if entry.state == "held" and entry.queue_id not in held:
            detail = "no longer in the hold queue (quarantine scan)"
            entry = index.set_state(store, entry, "gone", detail)
            report.gone.append(entry.queue_id)
        current.append(entry)
    index.reindex(store, [*added, *current], cfg.retention)
    report.added = [e.queue_id for e in added]
    return report


def _all_entries(store: RedisStore) -> list[Entry]:
    found = index.select(store, limit=10**7, max_scan=10**7)
    return found.entries
