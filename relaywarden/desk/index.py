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
MAX_LISTED = 500  # matching entries one listing shows; older ones are a page further
CHUNK = 500  # index members read per round trip while filtering
MAX_SCAN = 100_000  # index members one listing may read before it says "more"


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


def facet_keys(store: RedisStore, entry: Entry) -> list[str]:
    """The secondary indexes an entry is listed in: its VPS, customer, findings."""
    keys = [facet_key(store, "vps", entry.vps)]
    if entry.customer:
        keys.append(facet_key(store, "customer", entry.customer))
    for f in entry.findings[:20]:
        keys.append(facet_key(store, "finding", str(f.get("check"))))
        keys.append(facet_key(store, "finding", f"{f.get('check')}/{f.get('name')}"))
    return list(dict.fromkeys(keys))


def facet_key(store: RedisStore, kind: str, value: str) -> str:
    # The value is hashed, never spliced: it comes from a message.
    return f"{store.keys.prefix}:quarantine:{kind}:{{{digest(value)}}}"


def queue_write(
    store: RedisStore, pipe: redis.client.Pipeline, entry: Entry, retention: float
) -> None:
    """File `entry` on `pipe` (the caller's round trip): the entry, the time index,
    and one index per VPS, customer and finding, each trimmed to `retention`."""
    key = entry_key(store, entry.queue_id)
    pipe.hset(key, entry.relay, _stored(entry))
    pipe.expire(key, int(retention) + 1)
    for index in (index_key(store), *facet_keys(store, entry)):
        pipe.zadd(index, {_member(entry): entry.time})
        pipe.zremrangebyscore(index, 0, entry.time - retention)
        if index != index_key(store):
            pipe.expire(index, int(retention) + 1)


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


@dataclass(frozen=True)
class Selection:
    """What a listing found: matching entries newest first, and whether the index
    holds more (older) ones than were read."""

    entries: list[Entry]
    more: bool
    older: float | None  # pass as `before` to continue


def select(
    store: RedisStore,
    *,
    vps: str | None = None,
    customer: str | None = None,
    finding: str | None = None,
    since: float = 0.0,
    before: float | None = None,
    match: Callable[[Entry], bool] | None = None,
    limit: int = MAX_LISTED,
    max_scan: int = MAX_SCAN,
) -> Selection:
    """Entries held in [since, before), newest first, read from the narrowest
    index (VPS, else customer, else finding, else all) and checked against every
    filter, a chunk at a time, until `limit` match or the index ends. No cap is
    applied before the filters, so a flood of new entries hides nothing."""
    facets = [("vps", vps), ("customer", customer), ("finding", finding)]
    index = next((facet_key(store, k, v) for k, v in facets if v), index_key(store))
    high: str = f"({before}" if before is not None else "+inf"
    found: list[Entry] = []
    scanned = 0
    while scanned < max_scan:
        with redis_errors("quarantine listing"):
            rows: list[tuple[bytes, float]] = store.client.zrevrangebyscore(  # type: ignore[assignment]
                index, high, since, start=0, num=CHUNK, withscores=True
            )
        if not rows:
            return Selection(found, False, None)
        entries = _load(store, index, [m for m, _ in rows])
        scanned += len(rows)
        for (_, score), entry in zip(rows, entries, strict=True):
            if entry is None or not _wanted(entry, vps, customer, finding, match):
                continue
            found.append(entry)
            if len(found) == limit:
                # The next page starts below this time (float seconds: ties are
                # near impossible).
                return Selection(found, True, score)
        high = f"({rows[-1][1]}"
        if len(rows) < CHUNK:
            return Selection(found, False, None)
    return Selection(found, True, float(high[1:]))


def _wanted(
    entry: Entry,
    vps: str | None,
    customer: str | None,
    finding: str | None,
    match: Callable[[Entry], bool] | None,
) -> bool:
    if vps and entry.vps != vps:
        return False
    if customer and entry.customer != customer:
        return False
    if (
        finding
        and finding not in entry.finding_names
        and not any(str(f.get("check")) == finding for f in entry.findings)
    ):
        return False
    return match is None or match(entry)


def _load(store: RedisStore, index: str, members: list[bytes]) -> list[Entry | None]:
    pairs = [json.loads(m) for m in members]
    with redis_errors("quarantine listing"):
        pipe = store.client.pipeline(transaction=False)
        for relay, qid in pairs:
            pipe.hget(entry_key(store, qid), relay)
        rows = pipe.execute()
        gone = [m for m, row in zip(members, rows, strict=True) if row is None]
        if gone:  # expired entries leave the index they were found in
            store.client.zrem(index, *gone)
    return [_entry(r) for r in rows]


def get_many(store: RedisStore, ids: list[tuple[str, str]]) -> list[Entry | None]:
    """The entries for these (relay, queue id) pairs, in one round trip."""
    with redis_errors("quarantine lookup"):
        pipe = store.client.pipeline(transaction=False)
        for relay, qid in ids:
            pipe.hget(entry_key(store, qid), relay)
        return [_entry(r) for r in pipe.execute()]


def recent(store: RedisStore, since: float = 0.0, limit: int = MAX_LISTED) -> list[Entry]:
    """Entries held at or after `since`, newest first; expired ones are dropped."""
    return select(store, since=since, limit=limit).entries


def reindex(store: RedisStore, entries: list[Entry], retention: float) -> None:
    """File entries again in every index (after an upgrade, or by `quarantine scan`)."""
    with redis_errors("quarantine reindex"):
        pipe = store.client.pipeline(transaction=False)
        for entry in entries:
            queue_write(store, pipe, entry, retention)
        pipe.execute()


def set_state(store: RedisStore, entry: Entry, state: str, detail: str = "") -> Entry:
    """Record what became of a held message; keeps the entry's expiry."""
    updated = replace(entry, state=state, state_detail=sanitise(detail, 300))
    with redis_errors("quarantine update"):
        store.client.hset(entry_key(store, entry.queue_id), entry.relay, _stored(updated))
    return updated
