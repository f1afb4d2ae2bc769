"""The audit trail: every abuse-team action, who did it, to what, and why.

A capped Redis stream shared by all relays. Entries are written by the service
functions that perform the actions (never by the CLI or web layer alone), so no
path to an action can skip it. Each entry is also logged (logger
"relaywarden.audit"), so the trail survives the loss of Redis.

Text fields are made one clean line on the way in (a reason cannot forge a
second entry or carry a terminal escape sequence); readers that print to a
terminal escape them again, for entries written by anything else.
"""

from __future__ import annotations

import getpass
import json
import logging
import logging.handlers
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from relaywarden.safetext import sanitise
from relaywarden.store import RedisStore, redis_errors

AUDIT_MAXLEN = 1_000_000
PAGE = 100  # entries per page of the desk and of `relaywarden audit`
SCAN_CHUNK = 1000  # stream entries read per round trip while filtering
MAX_SCAN = 50_000  # stream entries one filtered page may read before it says "more"

log = logging.getLogger("relaywarden.audit")


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str  # "block", "unblock", "release", "delete", "reset", "login", ...
    target: str  # a subject ("vps:203.0.113.7") or a queue id
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    via: str = "cli"  # "cli", "web", "milter" (automatic), "agent", "api"
    id: str = ""  # the stream id, filled in when read back


def cli_actor(explicit: str | None) -> str:
    """The operator's name for the CLI: --as NAME, else the login name."""
    if explicit:
        return explicit
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def clean(entry: AuditEntry) -> AuditEntry:
    """One line per field, no control or bidi characters, bounded lengths."""
    return replace(
        entry,
        actor=sanitise(entry.actor, 100),
        action=sanitise(entry.action, 40),
        target=sanitise(entry.target, 400),
        reason=sanitise(entry.reason, 200),
        via=sanitise(entry.via, 20),
    )


def record(store: RedisStore, entry: AuditEntry) -> None:
    entry = clean(entry)
    data = asdict(entry)
    data.pop("id")
    log.info("audit", extra={"fields": {"event": "audit", **data}})
    if not logging.getLogger().handlers:
        _to_syslog(data)
    with redis_errors("audit write"):
        store.client.xadd(
            store.keys.audit,
            {"json": json.dumps(data, default=str)},
            maxlen=AUDIT_MAXLEN,
            approximate=True,
        )


def _to_syslog(data: dict[str, Any]) -> None:
    """A command run by hand has no log stream of its own (the daemons do: `run`,
    `web`, `agent`): its actions go to the system log too, as sudo's do, so the
    trail survives the loss of Redis. RELAYWARDEN_SYSLOG names another socket
    than /dev/log; no socket, no line (the Redis stream still has it)."""
    path = os.environ.get("RELAYWARDEN_SYSLOG", "/dev/log")
    if not os.path.exists(path):
        return
    line = "relaywarden-audit: " + json.dumps({"event": "audit", **data}, default=str)
    try:  # a syslog that is gone must not stop the action itself
        handler = logging.handlers.SysLogHandler(
            address=path, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
        )
        try:
            handler.emit(logging.LogRecord(log.name, logging.INFO, "", 0, line, None, None))
        finally:
            handler.close()
    except OSError:
        pass


@dataclass(frozen=True)
class AuditFilter:
    """What a reader wants; empty fields match everything."""

    since: float = 0.0
    actor: str = ""
    action: str = ""
    subject: str = ""  # matches the target (a subject or a queue id) or a detail value

    def matches(self, entry: AuditEntry) -> bool:
        if self.actor and entry.actor != self.actor:
            return False
        if self.action and entry.action != self.action:
            return False
        if self.subject:
            needle = self.subject.lower()
            if needle not in entry.target.lower() and not any(
                needle == str(v).lower() for v in entry.details.values()
            ):
                return False
        return True


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    older: str | None  # pass as `before` for the next (older) page; None = the end


def _entry(event_id: bytes, fields: dict[bytes, bytes]) -> AuditEntry | None:
    try:
        data = json.loads(fields[b"json"])
        data.pop("id", None)
        return AuditEntry(**data, id=event_id.decode())
    except (KeyError, ValueError, TypeError):
        return None


def page(
    store: RedisStore,
    where: AuditFilter | None = None,
    *,
    before: str | None = None,
    count: int = PAGE,
    max_scan: int = MAX_SCAN,
) -> AuditPage:
    """Up to `count` matching entries older than `before` (a stream id), newest first.

    Filters walk the whole stream, a chunk at a time; one call reads at most
    `max_scan` entries and then returns what it found with a cursor to go on.
    """
    where = where or AuditFilter()
    low = f"{int(where.since * 1000)}-0" if where.since else "-"
    high = f"({before}" if before else "+"
    found: list[AuditEntry] = []
    scanned = 0
    while len(found) < count and scanned < max_scan:
        with redis_errors("audit read"):
            rows: list[tuple[bytes, dict[bytes, bytes]]] = store.client.xrevrange(  # type: ignore[assignment]
                store.keys.audit, max=high, min=low, count=SCAN_CHUNK
            )
        if not rows:
            return AuditPage(found, None)
        for event_id, fields in rows:
            scanned += 1
            high = f"({event_id.decode()}"
            entry = _entry(event_id, fields)
            if entry is not None and where.matches(entry):
                found.append(entry)
                if len(found) == count:
                    break
        if len(rows) < SCAN_CHUNK and len(found) < count:
            return AuditPage(found, None)
    return AuditPage(found, high[1:])


def read(store: RedisStore, since: float = 0.0, count: int = 1000) -> list[AuditEntry]:
    """Newest first, entries at or after `since` (epoch seconds)."""
    return page(store, AuditFilter(since=since), count=count).entries
