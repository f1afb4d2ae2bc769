"""Blocking and unblocking subjects: the one service the CLI, the web page and the
automatic escalation all go through, so every block is audited the same way."""

from __future__ import annotations

import time

from relaywarden import audit
from relaywarden.policy.durations import check_duration
from relaywarden.store import BlockRecord, RedisStore
from relaywarden.subjects import Subject

BLOCK_ACTIONS = ("reject", "tempfail", "quarantine", "discard")


def block(
    store: RedisStore,
    subject: Subject,
    *,
    actor: str,
    reason: str,
    duration: float | None,
    action: str = "reject",
    via: str = "cli",
    now: float | None = None,
) -> BlockRecord:
    """Block `subject` for `duration` seconds (None: until lifted)."""
    if action not in BLOCK_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(BLOCK_ACTIONS)}")
    if duration is not None and duration <= 0:
        raise ValueError("a block lasts a positive time")
    if duration is not None:
        check_duration(duration)  # every caller, not only those that parsed text
    since = time.time() if now is None else now
    record = BlockRecord(
        subject=str(subject),
        action=action,
        reason=reason[:200],
        set_by=actor,
        since=since,
        until=None if duration is None else since + duration,
    )
    store.set_block(record)
    _audit(store, actor, "block", subject, reason, via, until=record.until, block_action=action)
    return record


def unblock(
    store: RedisStore, subject: Subject, *, actor: str, reason: str = "", via: str = "cli"
) -> bool:
    """Lift a block; True if there was one. Audited either way."""
    removed = store.remove_block(subject)
    # The hits that earned an automatic block go with it (escalation imports us).
    from relaywarden.limits.escalation import forget

    forget(store, subject)
    _audit(store, actor, "unblock", subject, reason, via, was_blocked=removed)
    return removed


def _audit(
    store: RedisStore,
    actor: str,
    what: str,
    subject: Subject,
    reason: str,
    via: str,
    **details: object,
) -> None:
    entry = audit.AuditEntry(
        actor=actor,
        action=what,
        target=str(subject),
        reason=reason[:200],
        details=details,
        via=via,
    )
    audit.record(store, entry)
