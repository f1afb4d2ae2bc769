"""Complaints delivered to a Maildir (the abuse@ mailbox) instead of the listener.

Each message in `new/` is read once: recorded like a report received by SMTP,
then moved to `cur/` (flag S, "seen"). A message larger than `[complaints]
max_size` is moved to `cur/` unread (and logged); a Redis failure leaves the
message in `new/` for the next pass, so nothing is lost or counted twice
(the move follows the record).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from relaywarden.complaints.service import take
from relaywarden.errors import StoreError
from relaywarden.policy import Policy
from relaywarden.store import RedisStore

log = logging.getLogger("relaywarden.complaints")


@dataclass
class Pass:
    recorded: int = 0
    too_large: int = 0
    failed: int = 0


def _seen(path: Path, maildir: Path) -> None:
    name = path.name.split(":", 1)[0] + ":2,S"
    os.replace(path, maildir / "cur" / name)


def read_maildir(store: RedisStore, policy: Policy, maildir: Path, limit: int = 10_000) -> Pass:
    """One pass over `maildir/new` (at most `limit` messages)."""
    done = Pass()
    new = maildir / "new"
    (maildir / "cur").mkdir(exist_ok=True)
    for path in sorted(new.iterdir())[:limit]:
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.stat().st_size > policy.complaints.max_size:
            log.warning("complaint %s is larger than max_size; not read", path.name)
            _seen(path, maildir)
            done.too_large += 1
            continue
        try:
            take(store, policy, path.read_bytes(), f"maildir:{maildir.name}")
        except StoreError as exc:
            log.warning("complaint %s not recorded (kept in new/): %s", path.name, exc)
            done.failed += 1
            continue
        _seen(path, maildir)
        done.recorded += 1
    return done
