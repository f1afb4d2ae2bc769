"""The spam budget: N spam verdicts within W per VPS and per customer, then an
automatic block (as Mail Assure's "about 5 spam in 10 minutes", Halon's
per-customer budgets).

Counting rides on the end-of-message pipeline (an INCR per scope, no round trip
of its own); only when a count reaches the budget does blocking cost more (the
block record and its audit entry, once per block).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from relaywarden import blocking
from relaywarden.keys import digest
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.store import FINISH_RESULTS, Outcome, RedisStore
from relaywarden.subjects import Subject
from relaywarden.verdict import Action, Verdict

log = logging.getLogger("relaywarden.content")

CONTENT_CHECKS = frozenset({"content", "campaigns", "reputation", "rspamd"})
SLOTS = "spam.slots"  # Message.notes: [(subject, index in the pipeline)] of the last finish
COUNTED = "spam.counted"  # Message.notes: this message has been counted once
POLICY_NOTE = "spam.policy"
ACTOR = "relaywarden"


def is_spam(verdict: Verdict) -> bool:
    if verdict.action < Action.QUARANTINE:
        return False
    return any(
        f.check in CONTENT_CHECKS and (f.score > 0 or f.action is not None)
        for f in verdict.findings
    )


def key(store: RedisStore, subject: Subject) -> str:
    return f"{store.keys.prefix}:spam:{{{digest(str(subject))}}}"


def finish_hook(store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
    msg = outcome.message
    policy = msg.notes.get(POLICY_NOTE)
    if not isinstance(policy, Policy) or COUNTED in msg.notes:
        return
    cfg = policy.spam_budget
    if not cfg.enabled or not is_spam(outcome.verdict):
        return
    msg.notes[COUNTED] = True
    sender = outcome.sender
    subjects = [Subject("vps", sender.vps)] if "vps" in cfg.scopes else []
    if sender.customer and "customer" in cfg.scopes:
        subjects.append(Subject("customer", sender.customer))
    slots = []
    for subject in subjects:
        slots.append((subject, len(pipe)))
        pipe.incr(key(store, subject))
        pipe.expire(key(store, subject), int(cfg.window), nx=True)
    msg.notes[SLOTS] = slots


def remember(notes: dict[str, Any], policy: Policy) -> None:
    """Leave the policy the message is judged under for the hook (Outcome has none)."""
    notes[POLICY_NOTE] = policy


def enforce(store: RedisStore, notes: dict[str, Any], policy: Policy) -> list[Subject]:
    """After a finish: block each scope whose count reached the budget; the blocked."""
    slots = notes.pop(SLOTS, None)
    results = notes.get(FINISH_RESULTS)
    if not slots or not isinstance(results, list):
        return []
    cfg = policy.spam_budget
    blocked = []
    for subject, index in slots:
        count = results[index] if index < len(results) else None
        if not isinstance(count, int) or count < cfg.spam or store.blocks_for([subject]):
            continue
        reason = f"automatic: {count} spam verdicts within {format_duration(cfg.window)}"
        blocking.block(
            store,
            subject,
            actor=ACTOR,
            reason=reason,
            duration=cfg.block_for,
            action=cfg.action,
            via="milter",
        )
        log.warning("spam budget spent: %s blocked (%s)", subject, reason)
        blocked.append(subject)
    return blocked


RedisStore.finish_hooks.append(finish_hook)
