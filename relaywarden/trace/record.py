"""What a trace token leads back to: the transaction's decision, recorded at end
of message on the store's one pipeline (no round trip of its own) and kept for
`[trace] retention`, so a complaint weeks later still finds the customer."""

from __future__ import annotations

import json
from typing import Any

import redis

from relaywarden.keys import Keys, digest
from relaywarden.store import Outcome, RedisStore, redis_errors
from relaywarden.trace import NOTE, Stamp, TraceInfo

# Fields of the decision record that name the transaction; the token itself
# carries relay, queue id and time.
FIELDS = (
    "ref",
    "customer",
    "vps",
    "sasl_user",
    "client_address",
    "sender",
    "sender_domain",
    "recipient_count",
    "action",
    "reply",
    "score",
)


def trace_key(keys: Keys, relay: str, queue_id: str) -> str:
    return f"{keys.prefix}:trace:{digest(relay + ' ' + queue_id)}"


def summary(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: event[k] for k in FIELDS if k in event}
    out["findings"] = [f.get("name") for f in event.get("findings", [])]
    return out


class TraceRecorder:
    """The `RedisStore.finish_hooks` entry; its retention follows policy reloads."""

    def __init__(self, retention: float) -> None:
        self.retention = retention

    def __call__(self, store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
        st = outcome.message.notes.get(NOTE)
        if not isinstance(st, Stamp) or outcome.event.get("trace") != st.token:
            return  # not stamped: refused, discarded, or no key configured
        key = trace_key(store.keys, st.info.relay, st.info.queue_id)
        ttl = max(1, int(self.retention))
        pipe.set(key, json.dumps(summary(outcome.event), default=str), ex=ttl)


def attach(retention: float) -> TraceRecorder:
    for hook in RedisStore.finish_hooks:
        if isinstance(hook, TraceRecorder):
            hook.retention = retention
            return hook
    recorder = TraceRecorder(retention)
    RedisStore.finish_hooks.append(recorder)
    return recorder


def lookup(store: RedisStore, info: TraceInfo) -> dict[str, Any] | None:
    """The recorded decision of the transaction a verified token names."""
    with redis_errors("trace lookup"):
        raw = store.client.get(trace_key(store.keys, info.relay, info.queue_id))
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data
