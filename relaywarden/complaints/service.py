"""Taking a complaint in: trace it back, count it, keep it for the desk.

A report whose token verifies and whose transaction is still recorded
(`[trace] retention`) is attributed to that transaction's customer, VPS and
login and counted in the same window counters as delivery outcomes (code "c",
relaywarden/lua/outcomes.lua), so the next MAIL FROM reads it in its existing
round trip. Anything else is kept and shown as unattributed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from relaywarden import trace
from relaywarden.complaints.report import Report, read
from relaywarden.limits import scripts
from relaywarden.outcomes import counters
from relaywarden.policy import Policy
from relaywarden.store import RedisStore, is_cluster, redis_errors
from relaywarden.subjects import Subject
from relaywarden.trace.record import lookup

log = logging.getLogger("relaywarden.complaints")


def stream_key(prefix: str) -> str:
    return f"{prefix}:complaints"


@dataclass(frozen=True)
class Attribution:
    relay: str
    queue_id: str
    stamped: int
    record: dict[str, Any] | None  # the transaction's decision summary, if still kept

    def subjects(self) -> list[Subject]:
        rec = self.record or {}
        out = []
        if rec.get("vps"):
            out.append(Subject("vps", str(rec["vps"])))
        if rec.get("customer"):
            out.append(Subject("customer", str(rec["customer"])))
        if rec.get("sasl_user"):
            out.append(Subject("user", str(rec["sasl_user"])))
        return out


def attribute(store: RedisStore, policy: Policy, report: Report) -> Attribution | None:
    for token in report.tokens:
        info = trace.verify(token, policy.trace)
        if info is not None:
            return Attribution(info.relay, info.queue_id, info.time, lookup(store, info))
    return None


def take(
    store: RedisStore, policy: Policy, raw: bytes, peer: str, now: float | None = None
) -> dict[str, Any]:
    """Read, attribute, count and keep one complaint; returns what was kept."""
    now = time.time() if now is None else now
    report = read(raw, policy.trace.header)
    found = attribute(store, policy, report)
    subjects = found.subjects() if found is not None else []
    entry: dict[str, Any] = {
        "time": now,
        "peer": peer,
        **report.as_dict(),
        "attributed": bool(subjects),
        "subjects": [str(s) for s in subjects],
    }
    if found is not None:
        rec = found.record or {}
        entry.update(
            relay=found.relay,
            queue_id=found.queue_id,
            stamped=found.stamped,
            ref=rec.get("ref", ""),
            sender=rec.get("sender", ""),
        )
        if found.record is None:
            entry["problems"] = [*entry["problems"], "token valid, transaction no longer kept"]
    elif report.tokens:
        entry["problems"] = [*entry["problems"], "no token of ours verified"]
    else:
        entry["problems"] = [*entry["problems"], "no trace token found"]
    _store(store, policy, entry, subjects)
    if subjects and policy.complaints.enabled:
        from relaywarden.outcomes.service import warner  # the watcher's notices, same rule

        try:
            warner(store, policy)([str(s) for s in subjects])
        except Exception as exc:  # a notice, not a gate: the complaint is already recorded
            log.warning("complaint warning not sent: %s", exc)
    return entry


def _store(
    store: RedisStore, policy: Policy, entry: dict[str, Any], subjects: list[Subject]
) -> None:
    prefix = store.keys.prefix
    keys, scopes = counters.increments_spec(
        prefix, {s: {counters.COMPLAINTS: 1} for s in subjects}, policy.outcomes.window
    )

    def build(pipe: Any) -> None:
        pipe.xadd(
            stream_key(prefix),
            {"json": json.dumps(entry, default=str)},
            maxlen=policy.complaints.keep,
            approximate=True,
        )
        if not scopes:
            return
        if not is_cluster(store.client):
            # KEYS[1] is unused without "from"/"to": the stream key stands in.
            spec = json.dumps({"s": scopes})
            scripts.evalsha(pipe, "outcomes", [stream_key(prefix), *keys], ["", spec])
            return
        # A Cluster: one call per slot (a subject's two keys share its hash tag);
        # the group's first key stands in for the unused KEYS[1].
        groups: dict[int, list[int]] = {}
        for n, key in enumerate(keys):
            groups.setdefault(key_slot(key.encode()), []).append(n)
        for members in groups.values():
            spec = json.dumps({"s": [scopes[n] for n in members]})
            group = [keys[n] for n in members]
            scripts.evalsha(pipe, "outcomes", [group[0], *group], ["", spec])

    scripts.run(store.client, build, "recording a complaint")


def recent(
    store: RedisStore, count: int = 100, subject: Subject | None = None
) -> list[dict[str, Any]]:
    """Newest first; only those attributed to `subject` when given."""
    with redis_errors("complaint read"):
        rows: list[Any] = store.client.xrevrange(
            stream_key(store.keys.prefix), count=count * 10 if subject else count
        )  # type: ignore[assignment]
    out = []
    for _, fields in rows:
        try:
            entry = json.loads(fields[b"json"])
        except (KeyError, ValueError):
            continue
        if subject is None or str(subject) in entry.get("subjects", []):
            out.append(entry)
    return out[:count]
