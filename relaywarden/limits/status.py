"""Where a subject stands: counters per window, effective limits and why, warm-up,
baseline, blocks and recent decisions. Used by `relaywarden status` and the web page."""

from __future__ import annotations

import itertools
from typing import Any

from relaywarden.events import matches
from relaywarden.identity import EMPTY, Inventory, Sender
from relaywarden.inventory import vps_network
from relaywarden.limits.fetch import read_groups
from relaywarden.limits.model import (
    HITS,
    Scope,
    ScopeState,
    bindings,
    bursts,
    distinct_key,
    factor_for,
    limited_uniques,
    plan_for,
    scopes_for,
)
from relaywarden.policy import Policy
from relaywarden.policy.limits import Limits
from relaywarden.store import RedisStore
from relaywarden.subjects import Subject, SubjectError

STATUS_KINDS = ("vps", "customer", "user", "sender")


def normalise(subject: Subject, policy: Policy) -> Subject:
    """A `vps:` given as any address of an IPv6 /64 is that /64, as the milter keys it."""
    if subject.kind not in STATUS_KINDS:
        raise SubjectError(f"status and reset take {', '.join(k + ':' for k in STATUS_KINDS)}")
    if subject.kind == "vps":
        try:
            return Subject("vps", vps_network(subject.value, policy.identity.ipv6_prefix))
        except ValueError as exc:
            raise SubjectError(str(exc)) from None
    if subject.within is not None:  # customer:ID/sender:ADDRESS: that customer's counters
        return Subject(subject.kind, subject.value, normalise(subject.within, policy))
    return subject


def sender_for(subject: Subject, policy: Policy, inventory: Inventory) -> Sender:
    """The identity whose keys hold `subject`'s counters (its customer's hash tag)."""
    from relaywarden.message import normalise_ip

    if subject.within is not None:  # a sender scoped to a customer or VPS: its owner's keys
        owner = sender_for(subject.within, policy, inventory)
        return Sender(**{**owner.__dict__, "sasl_user": ""})
    customer = None
    if subject.kind == "vps":
        customer = inventory.lookup(normalise_ip(subject.value.split("/")[0]), "")
    elif subject.kind == "customer":
        customer = inventory.customers.get(subject.value)
    elif subject.kind == "user":
        customer = inventory.lookup(None, subject.value)
    elif subject.kind == "sender":
        domain = subject.value.rsplit("@", 1)[-1]
        customer = next((c for c in inventory.customers.values() if domain in c.domains), None)
    if subject.kind == "customer" and customer is None:
        return Sender(vps="-", customer=subject.value)
    return Sender(
        vps=subject.value if subject.kind == "vps" else "-",
        customer=customer.id if customer else None,
        plan=customer.plan if customer else "default",
        sasl_user=subject.value if subject.kind == "user" else "",
    )


def scope_of(subject: Subject, policy: Policy, sender: Sender) -> Scope:
    mail_from = subject.value if subject.kind == "sender" else ""
    sender_vps = sender if subject.kind == "vps" else Sender(**{**sender.__dict__, "vps": "-"})
    for scope in scopes_for(policy, sender_vps, mail_from):
        if scope.subject == subject.relay_wide:
            return scope
    # No limits of the plan on this scope: still show its hits and blocks.
    from relaywarden.limits.model import scope_key, tag_for, vps_tag

    tag = vps_tag(subject.value) if subject.kind == "vps" else tag_for(sender)
    return Scope(subject, scope_key(policy.redis.key_prefix, tag, subject), Limits())


def _window(state: ScopeState, binds: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "unit": b.unit,
            "window": b.window,
            "count": b.count,
            "limit": b.limit,
            "plan_limit": b.plan_limit,
            "left": max(0, b.left),
        }
        for b in binds
    ]


def subject_status(
    store: RedisStore,
    policy: Policy,
    subject: Subject,
    inventory: Inventory = EMPTY,
    clock: str = "",
) -> dict[str, Any]:
    subject = normalise(subject, policy)
    sender = sender_for(subject, policy, inventory)
    scope = scope_of(subject, policy, sender)
    now, groups, blocks = read_groups(store, policy, [[scope]], [subject], clock)
    state = groups[0][0]
    factor = factor_for(state.meta, policy, now)
    binds = bindings([state], factor)
    esc = policy.limits.escalation
    out: dict[str, Any] = {
        "subject": str(subject),
        "customer": sender.customer,
        "plan": plan_for(policy, sender)[0],
        "time": now,
        "windows": _window(state, binds),
        "limit_hits": {
            "count": state.counters.get((HITS, esc.period), 0),
            "period": esc.period,
            "block_after": esc.hits,
        },
        "automatic_blocks": state.meta.auto_blocks,
        "blocks": [b.__dict__ for b in blocks],
        "recent_decisions": recent_decisions(store, subject),
    }
    if scope.meta:
        out["effective"] = {
            "factor": round(factor.value, 4),
            "warmup_factor": round(factor.warmup, 4),
            "adaptive_factor": round(factor.adaptive, 4),
            "why": list(factor.reasons) or ["full plan"],
        }
        out["warmup"] = {
            "first_seen": state.meta.first_seen,
            "age_days": None if factor.age is None else round(factor.age / 86400, 3),
            "period_days": policy.limits.warmup.period / 86400,
        }
        out["penalty"] = round(factor.penalty, 4)
        per_hour = [round(r * 3600, 3) for r in state.meta.baseline]
        out["baseline_per_hour"] = dict(
            zip(("messages", "new_recipients", "new_domains"), per_hour, strict=True)
        )
        out["bursts"] = [b.__dict__ for b in bursts(state, policy, now)]
    return out


def recent_decisions(
    store: RedisStore, subject: Subject, scan: int = 1000, keep: int = 20
) -> list[dict[str, Any]]:
    """The subject's last decisions, newest first, from the capped event stream."""
    mine = (e for e in store.recent_events(scan) if matches(subject, e))
    fields = ("ref", "stage", "action", "reply", "score", "queue_id", "would_action")
    return [{k: e.get(k) for k in fields} for e in itertools.islice(mine, keep)]


def reset_keys(store: RedisStore, scope: Scope, restart_warmup: bool = False) -> int:
    """Delete a subject's counters (its hash, its HyperLogLogs and its unique limits'
    sets). Its first-seen time survives unless `restart_warmup`: a reset forgives,
    it does not make an established customer new again."""
    client = store.client
    keys = [scope.key, scope.reservations, *client.scan_iter(match=scope.key + ":U*", count=1000)]
    keys += [distinct_key(scope, code, window) for code, window in limited_uniques(scope)]
    first_seen = None if restart_warmup else client.hget(scope.key, "fs")
    ttl = int(client.ttl(scope.key))
    pipe = client.pipeline(transaction=True)
    pipe.delete(*keys)
    if first_seen is not None:
        pipe.hset(scope.key, "fs", first_seen)
        if ttl > 0:
            pipe.expire(scope.key, ttl)
    return int(pipe.execute()[0])
