"""The quarantine index: what was held, where, and why, kept in Redis.

The milter files an entry at the end of a quarantined message, on the same
pipeline as its decision event (no extra round trip). The message itself stays
in Postfix's hold queue: nothing here is a copy that could drift from it.

Keys hash the queue id (never splice it); one hash per queue id holds one field
per relay, because the same id may exist on two relays sharing this Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import redis

from relaywarden.keys import digest
from relaywarden.policy.desk import QuarantineSection
from relaywarden.policy.schema import Policy
from relaywarden.safetext import sanitise
from relaywarden.store import Outcome, RedisStore, redis_errors
from relaywarden.verdict import Action

MAX_EVIDENCE_TEXT = 500
MAX_LISTED = 5000  # newest entries a listing reads; the abuse team filters below that


def _cap_evidence(value: Any) -> Any:
    if isinstance(value, str):
        return sanitise(value, MAX_EVIDENCE_TEXT)
    if isinstance(value, dict):
        return {sanitise(str(k), 100): _cap_evidence(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_cap_evidence(v) for v in value[:50]]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return sanitise(str(value), MAX_EVIDENCE_TEXT)


@dataclass(frozen=True)
class Entry:
    queue_id: str
    relay: str
    time: float
    ref: str
    customer: str | None
    vps: str
    sasl_user: str
    sender: str
    recipients: list[str]
    recipient_total: int
    subject: str
    from_header: str
    score: float
    findings: list[dict[str, Any]]
    # "held"; then "released"/"deleted" (or "release queued"/"delete queued" for a
    # relay that has not acted yet), "failed" when an action could not be applied.
    state: str = "held"
    state_detail: str = ""
    # Not stored: whether the message is in this relay's hold queue right now
    # (None when the entry belongs to another relay, which this host cannot see).
    in_hold: bool | None = field(default=None, compare=False)

    @property
    def finding_names(self) -> list[str]:
        return [f"{f.get('check')}/{f.get('name')}" for f in self.findings]

    @property
    def shown_state(self) -> str:
        if self.state == "held" and self.in_hold is False:
            return "left the hold queue"
        return self.state

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shown_state"] = self.shown_state
        return out


def entry_from_outcome(outcome: Outcome, cfg: QuarantineSection, now: float) -> Entry:
    msg, sender, verdict = outcome.message, outcome.sender, outcome.verdict
    return Entry(
        queue_id=msg.queue_id,
        relay=cfg.relay,
        time=now,
        ref=verdict.ref,
        customer=sender.customer,
        vps=sender.vps,
        sasl_user=sanitise(msg.sasl_user, cfg.max_text),
        sender=sanitise(msg.mail_from, cfg.max_text),
        recipients=[sanitise(r, cfg.max_text) for r in msg.rcpts[: cfg.max_recipients]],
        recipient_total=msg.rcpt_count,
        subject=sanitise(msg.first_header("Subject"), cfg.max_text),
        from_header=sanitise(msg.first_header("From"), cfg.max_text),
        score=verdict.score,
        findings=[_cap_evidence(f.as_dict()) for f in verdict.findings],
    )


def entry_key(store: RedisStore, queue_id: str) -> str:
    return f"{store.keys.prefix}:quarantine:{{{digest(queue_id)}}}"


def index_key(store: RedisStore) -> str:
    # A sorted set of [relay, queue id] by time held, so listing needs no SCAN.
    return f"{store.keys.prefix}:quarantine"


def _member(entry: Entry) -> str:
    return json.dumps([entry.relay, entry.queue_id])


def _stored(entry: Entry) -> str:
    # Shallow on purpose: asdict() deep-copies every finding, on the milter's hot path.
    return json.dumps(
        {f.name: getattr(entry, f.name) for f in fields(Entry) if f.name != "in_hold"}
    )


def queue_write(
    store: RedisStore, pipe: redis.client.Pipeline, entry: Entry, retention: float
) -> None:
    key = entry_key(store, entry.queue_id)
    pipe.hset(key, entry.relay, _stored(entry))
    pipe.expire(key, int(retention) + 1)
    pipe.zadd(index_key(store), {_member(entry): entry.time})
    pipe.zremrangebyscore(index_key(store), 0, entry.time - retention)


class QuarantineRecorder:
    """The `RedisStore.finish_hooks` entry: files quarantined messages.

    Reads the policy through a callable so a reload (new relay name, retention)
    applies to the next message.
    """

    def __init__(self, policy: Callable[[], Policy], clock: Callable[[], float] = time.time):
        self.policy = policy
        self.clock = clock

    def __call__(self, store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
        if outcome.verdict.action != Action.QUARANTINE or not outcome.message.queue_id:
            return
        cfg = self.policy().quarantine
        queue_write(store, pipe, entry_from_outcome(outcome, cfg, self.clock()), cfg.retention)


def install(policy: Callable[[], Policy]) -> None:
    """Register the recorder once per process."""
    if not any(isinstance(h, QuarantineRecorder) for h in RedisStore.finish_hooks):
        RedisStore.finish_hooks.append(QuarantineRecorder(policy))


def _entry(raw: bytes | None) -> Entry | None:
    if raw is None:
        return None
    try:
        return Entry(**json.loads(raw))
    except (ValueError, TypeError):
        return None  # an entry from an incompatible version: not worth a crash


def get(store: RedisStore, queue_id: str) -> list[Entry]:
    """Every relay's entry for this queue id."""
    with redis_errors("quarantine lookup"):
        rows: dict[bytes, bytes] = store.client.hgetall(entry_key(store, queue_id))  # type: ignore[assignment]
    return sorted(
        (e for e in (_entry(v) for v in rows.values()) if e is not None), key=lambda e: e.relay
    )


def recent(store: RedisStore, since: float = 0.0, limit: int = MAX_LISTED) -> list[Entry]:
    """Entries held at or after `since`, newest first; expired ones are dropped."""
    with redis_errors("quarantine listing"):
        members: list[bytes] = store.client.zrevrangebyscore(  # type: ignore[assignment]
            index_key(store), "+inf", since, start=0, num=limit
        )
        pairs = [json.loads(m) for m in members]
        pipe = store.client.pipeline(transaction=False)
        for relay, qid in pairs:
            pipe.hget(entry_key(store, qid), relay)
        rows = pipe.execute()
        gone = [m for m, row in zip(members, rows, strict=True) if row is None]
        if gone:
            store.client.zrem(index_key(store), *gone)
    return [e for e in (_entry(r) for r in rows) if e is not None]


def set_state(store: RedisStore, entry: Entry, state: str, detail: str = "") -> Entry:
    """Record what became of a held message; keeps the entry's expiry."""
    updated = replace(entry, state=state, state_detail=sanitise(detail, 300))
    with redis_errors("quarantine update"):
        store.client.hset(entry_key(store, entry.queue_id), entry.relay, _stored(updated))
    return updated
