"""The two Redis round trips of a message: `fetch` at MAIL FROM (blocks plus every
window of every scope) and `queue_commit` on the end-of-message pipeline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from relaywarden.identity import Sender
from relaywarden.limits import scripts
from relaywarden.limits.model import (
    HITS,
    Binding,
    Burst,
    Factor,
    Meta,
    Read,
    Scope,
    ScopeState,
    allowance,
    bindings,
    bursts,
    factor_for,
    global_scope,
    reads_for,
    scopes_for,
)
from relaywarden.limits.model import NSUB as NSUB
from relaywarden.message import Message
from relaywarden.policy import Policy
from relaywarden.store import BlockRecord, RedisStore
from relaywarden.subjects import Subject


@dataclass
class LimitState:
    """What the MAIL FROM round trip learned; RCPT and EOM decide from it alone."""

    policy: Policy
    now: float  # Redis time (or the injected clock) at MAIL FROM
    groups: list[list[ScopeState]]  # [tagged scopes] and, if any, [global ceiling]
    factor: Factor
    binds: list[Binding]
    allow: dict[str, Binding]
    bursts: list[Burst]
    blocks: list[BlockRecord]
    clock: str = ""  # the injected clock passed to the scripts ("" = Redis TIME)
    hit_scopes: set[str] = field(default_factory=set)  # counted once per transaction
    committed: bool = False

    @property
    def vps(self) -> ScopeState:
        return self.groups[0][0]

    def scope_states(self) -> list[ScopeState]:
        return [st for group in self.groups for st in group]


class PendingRead(Protocol):
    """A feature's reads on the MAIL FROM pipeline (outcomes, login spread...)."""

    def queue(self, pipe: redis.client.Pipeline) -> int:
        """Queue commands; return how many, so their replies can be handed back."""
        ...

    def take(self, replies: list[Any], now: float) -> None:
        """Its replies, in order, and the Redis time of the round trip (what it
        learned goes on the message's notes, for its check)."""
        ...


# Features that read at MAIL FROM register here (at import); their commands ride
# on the same pipeline as the blocks and the limits: no round trip of their own.
MailRead = Callable[[Policy, Sender, Message, RedisStore], PendingRead | None]
MAIL_READS: list[MailRead] = []


def _spec_read(reads: list[Read], meta: list[bool]) -> str:
    return json.dumps(
        {
            "s": [
                {
                    "c": [[code, w, NSUB] for code, w in r.counters],
                    "u": [[code, w] for code, w in r.uniques],
                    "m": 1 if m else 0,
                }
                for r, m in zip(reads, meta, strict=True)
            ]
        }
    )


def _queue_check(
    pipe: redis.client.Pipeline, scopes: list[Scope], reads: list[Read], clock: str
) -> None:
    spec = _spec_read(reads, [s.meta for s in scopes])
    scripts.evalsha(pipe, "check", [s.key for s in scopes], [clock, spec])


def _parse(scopes: list[Scope], reads: list[Read], reply: list[Any]) -> list[ScopeState]:
    states = []
    for scope, read, (counts, uniques, meta) in zip(scopes, reads, reply, strict=True):
        states.append(
            ScopeState(
                scope,
                {k: int(v) for k, v in zip(read.counters, counts, strict=True)},
                {k: int(v) for k, v in zip(read.uniques, uniques, strict=True)},
                Meta.parse([v.decode() if isinstance(v, bytes) else str(v) for v in meta]),
            )
        )
    return states


def read_groups(
    store: RedisStore,
    policy: Policy,
    groups: list[list[Scope]],
    block_subjects: list[Subject],
    clock: str = "",
    extra: list[PendingRead] | None = None,
) -> tuple[float, list[list[ScopeState]], list[BlockRecord]]:
    """One round trip: block records of `block_subjects`, the state of every group,
    and the commands of `extra` (handed their replies)."""
    reads = [[reads_for(s, policy) for s in group] for group in groups]
    sizes: list[int] = []

    def build(pipe: redis.client.Pipeline) -> None:
        sizes.clear()
        for subject in block_subjects:
            pipe.hgetall(store.keys.block(subject))
        for group, group_reads in zip(groups, reads, strict=True):
            _queue_check(pipe, group, group_reads, clock)
        for pending in extra or []:
            sizes.append(pending.queue(pipe))

    results = scripts.run(store.client, build, "rate-limit lookup")
    ours = len(block_subjects) + len(groups)
    results, rest = results[:ours], results[ours:]
    rows, replies = results[: len(block_subjects)], results[len(block_subjects) :]
    wall = time.time()
    blocks = [r for r in (RedisStore._record(row) for row in rows if row) if r.active(wall)]
    now = float(replies[0][0]) if replies else wall
    states = [
        _parse(group, group_reads, reply[1])
        for group, group_reads, reply in zip(groups, reads, replies, strict=True)
    ]
    for pending, size in zip(extra or [], sizes, strict=True):
        pending_replies, rest = rest[:size], rest[size:]
        pending.take(pending_replies, now)
    return now, states, blocks


def fetch(
    store: RedisStore, policy: Policy, sender: Sender, message: Message, clock: str = ""
) -> LimitState:
    groups = [scopes_for(policy, sender, message.mail_from or "")]
    ceiling = global_scope(policy)
    if ceiling is not None:
        groups.append([ceiling])
    extra = [p for p in (read(policy, sender, message, store) for read in MAIL_READS) if p]
    now, states, blocks = read_groups(
        store, policy, groups, sender.subjects(message), clock, extra
    )
    vps = states[0][0]
    factor = factor_for(vps.meta, policy, now)
    binds = bindings([st for group in states for st in group], factor)
    return LimitState(
        policy=policy,
        now=now,
        groups=states,
        factor=factor,
        binds=binds,
        allow=allowance(binds),
        bursts=bursts(vps, policy, now),
        blocks=blocks,
        clock=clock,
    )


# -- the commit ----------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """What a decided message adds: zero everywhere for a refused one."""

    accepted: bool
    recipients: list[str]
    size: int
    penalty: float
    hits: frozenset[str]  # scope labels whose limits this transaction hit


def _members(values: list[str]) -> list[str]:
    from relaywarden.keys import digest

    return sorted({digest(v.lower())[:16] for v in values})


def _ttl(scope: Scope, policy: Policy) -> int:
    cfg = policy.limits
    longest = max([r.window for _, r in scope.limits.rates()] + [cfg.escalation.period])
    ttl = longest * (1 + 1 / NSUB) + 60
    if cfg.escalation.enabled:
        ttl = max(ttl, cfg.escalation.memory)
    if scope.meta:
        ttl = max(ttl, cfg.warmup.period, 4 * cfg.adaptive.half_life, 3 * cfg.burst.baseline_period)
    return int(ttl) + 1


def _scope_commit(st: ScopeState, usage: Usage, policy: Policy) -> dict[str, Any] | None:
    amounts = {"m": 1, "r": len(usage.recipients), "b": usage.size} if usage.accepted else {}
    hit = 1 if st.scope.label in usage.hits else 0
    counters = []
    for code, window in st.counters:
        amount = hit if code == HITS else amounts.get(code, 0)
        if amount:
            counters.append([code, window, NSUB, amount])
    uniques: list[tuple[str, float, list[str]]] = []
    domains = [r.rsplit("@", 1)[-1] for r in usage.recipients]
    for code, window in st.uniques:
        values = usage.recipients if code == "R" else domains
        uniques.append((code, window, _members(values) if usage.accepted else []))
    spec: dict[str, Any] = {"c": counters, "u": uniques, "ttl": _ttl(st.scope, policy)}
    if st.scope.meta:
        if usage.accepted:
            spec["fs"] = 1
            burst = policy.limits.burst
            if burst.enabled:
                index = {u[0] + str(u[1]): n + 1 for n, u in enumerate(uniques)}
                w = str(burst.window)
                spec["bl"] = [
                    burst.baseline_period,
                    1,
                    index.get("R" + w, 0),
                    index.get("D" + w, 0),
                ]
        if usage.penalty > 0:
            spec["p"] = [usage.penalty, policy.limits.adaptive.half_life]
    if not counters and not any(u[2] for u in uniques) and not {"fs", "p", "bl"} & set(spec):
        return None
    return spec


def queue_commit(pipe: redis.client.Pipeline, state: LimitState, usage: Usage) -> None:
    """Queue commit.lua for each group on the end-of-message pipeline."""
    for group in state.groups:
        specs = [(st, _scope_commit(st, usage, state.policy)) for st in group]
        todo = [(st, spec) for st, spec in specs if spec is not None]
        if todo:
            keys = [st.scope.key for st, _ in todo]
            body = json.dumps({"s": [spec for _, spec in todo]})
            scripts.evalsha(pipe, "commit", keys, [state.clock, body])
