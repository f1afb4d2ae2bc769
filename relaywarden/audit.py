"""The audit trail: every abuse-team action, who did it, to what, and why.

A capped Redis stream shared by all relays. Entries are written by the service
functions that perform the actions (never by the CLI or web layer alone), so no
path to an action can skip it.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from relaywarden.store import RedisStore, redis_errors

AUDIT_MAXLEN = 1_000_000


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str  # "block", "unblock", "release", "delete", "reset", "login", ...
    target: str  # a subject ("vps:203.0.113.7") or a queue id
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    via: str = "cli"  # "cli", "web", "milter" (automatic), "agent"


def cli_actor(explicit: str | None) -> str:
    """The operator's name for the CLI: --as NAME, else the login name."""
    if explicit:
        return explicit
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def record(store: RedisStore, entry: AuditEntry) -> None:
    with redis_errors("audit write"):
        store.client.xadd(
            store.keys.audit,
            {"json": json.dumps(asdict(entry), default=str)},
            maxlen=AUDIT_MAXLEN,
            approximate=True,
        )


def read(store: RedisStore, since: float = 0.0, count: int = 1000) -> list[AuditEntry]:
    """Newest first, entries at or after `since` (epoch seconds)."""
    start = f"{int(since * 1000)}-0" if since else "-"
    with redis_errors("audit read"):
        rows: list[tuple[bytes, dict[bytes, bytes]]] = store.client.xrevrange(  # type: ignore[assignment]
            store.keys.audit, max="+", min=start, count=count
        )
    return [AuditEntry(**json.loads(fields[b"json"])) for _, fields in rows]
