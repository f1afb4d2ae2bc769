"""The two Redis round trips of a message: `fetch` at MAIL FROM (blocks, and
check-and-reserve over every window of every scope) and `queue_commit` on the
end-of-message pipeline (true-up: count what was used, give back the rest).
A transaction that ends without a final decision gives its reservation back with
`queue_release` on the pipeline that records its recipient decisions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import redis

from relaywarden import fastjson
from relaywarden.identity import Sender
from relaywarden.limits import scripts
from relaywarden.limits.model import (
    CODE,
    HITS,
    UNIQUE_UNITS,
    Binding,
    Burst,
    Factor,
    Meta,
    Read,
    Scope,
    ScopeState,
    allowance,
    bursts,
    distinct_key,
    factor_for,
    global_scope,
    limited_uniques,
    member,
    reads_for,
    ring_keys,
    scopes_for,
    tag_groups,
)
from relaywarden.limits.model import NSUB as NSUB
from relaywarden.message import Message
from relaywarden.policy import Policy
from relaywarden.policy.derived import of_object
from relaywarden.refs import unique_id
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
    # The reservation taken at MAIL FROM (reserve.lua): its id, whether every group
    # admitted the transaction, and per limited unit code how much it may use.
    rid: str = ""
    members: list[str] = field(default_factory=list)  # per group: the reservation held
    admitted: bool = True
    allot: dict[str, int] = field(default_factory=dict)
    want: dict[str, int] = field(default_factory=dict)
    settled: bool = False  # reservation trued up or given back
    rcpt_hits: set[str] = field(default_factory=set)  # scopes that refused a recipient
    # Per unique unit code ("R", "D"), when a unique limit is near full: the members
    # (model.member) every such limit counted already; writing to them is free.
    known: dict[str, frozenset[str]] = field(default_factory=dict)

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


def declare(keys: list[str], key: str) -> int:
    """Add `key` to a script's KEYS (once); its 1-based index, as the script reads it."""
    if key not in keys:
        keys.append(key)
    return keys.index(key) + 1


def _zindex(keys: list[str], scope: Scope, code: str, window: float) -> int:
    """KEYS index of the exact set behind a unique limit; 0: a HyperLogLog (no limit)."""
    if (code, window) not in limited_uniques(scope):
        return 0
    return declare(keys, distinct_key(scope, code, window))


def _unique_read(keys: list[str], scope: Scope, code: str, window: float) -> list[Any]:
    """[code, window, exact set's KEYS index, HyperLogLog ring's KEYS index]."""
    z = _zindex(keys, scope, code, window)
    return [code, window, z, ring_index(keys, scope.key, code, window, z)]


def _unique_commit(
    keys: list[str], scope: Scope, u: tuple[str, float, list[str], str]
) -> list[Any]:
    """commit.lua's [code, window, members, exact set's index, ring's index]."""
    code, window, members, zkey = u
    z = declare(keys, zkey) if zkey else 0
    return [code, window, members, z, ring_index(keys, scope.key, code, window, z)]


def ring_index(keys: list[str], key: str, code: str, window: float, zindex: int) -> int:
    """KEYS index of the first of a HyperLogLog count's ring of three (model.ring_keys,
    declared in that order); 0 for a unique limit's exact set (zindex > 0)."""
    if zindex:
        return 0
    first, *rest = (declare(keys, k) for k in ring_keys(key, code, window))
    assert rest == [first + 1, first + 2], "a ring's keys are declared together"
    return first


def _queue_check(
    pipe: redis.client.Pipeline, scopes: list[Scope], reads: list[Read], clock: str
) -> None:
    keys = [s.key for s in scopes]
    spec = {
        "s": [
            {
                "c": [[code, w, NSUB] for code, w in r.counters],
                "u": [_unique_read(keys, scope, code, w) for code, w in r.uniques],
                "m": 1 if scope.meta else 0,
            }
            for scope, r in zip(scopes, reads, strict=True)
        ]
    }
    scripts.evalsha(pipe, "check", keys, [clock, json.dumps(spec)])


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

    def queue(pipe: redis.client.Pipeline, group: list[Scope], reads: list[Read]) -> None:
        _queue_check(pipe, group, reads, clock)

    now, reads, replies, blocks = _mail_round_trip(
        store, policy, groups, block_subjects, extra, queue, "rate-limit lookup"
    )
    states = [
        _parse(group, group_reads, reply[1])
        for group, group_reads, reply in zip(groups, reads, replies, strict=True)
    ]
    return now, states, blocks


GroupQueuer = Callable[["redis.client.Pipeline", list[Scope], list[Read]], None]


def _mail_round_trip(
    store: RedisStore,
    policy: Policy,
    groups: list[list[Scope]],
    block_subjects: list[Subject],
    extra: list[PendingRead] | None,
    queue_group: GroupQueuer,
    what: str,
) -> tuple[float, list[list[Read]], list[Any], list[BlockRecord]]:
    """The MAIL FROM pipeline, built and split in one place: the block records of
    `block_subjects`, one script call per group (`queue_group`), then other
    features' reads (`extra`, handed their replies). Returns Redis's time (the
    first group's script answers it first), each group's reads and reply, and the
    blocks in force."""
    reads = [[reads_for(s, policy) for s in group] for group in groups]
    sizes: list[int] = []

    def build(pipe: redis.client.Pipeline) -> None:
        sizes.clear()
        for subject in block_subjects:
            pipe.hgetall(store.keys.block(subject))
        for group, group_reads in zip(groups, reads, strict=True):
            queue_group(pipe, group, group_reads)
        for pending in extra or []:
            sizes.append(pending.queue(pipe))

    results = scripts.run(store.client, build, what)
    ours = len(block_subjects) + len(groups)
    results, rest = results[:ours], results[ours:]
    rows, replies = results[: len(block_subjects)], results[len(block_subjects) :]
    wall = time.time()
    blocks = [r for r in (RedisStore._record(row) for row in rows if row) if r.active(wall)]
    now = float(_text(replies[0][0])) if replies else wall
    for pending, count in zip(extra or [], sizes, strict=True):
        pending_replies, rest = rest[:count], rest[count:]
        pending.take(pending_replies, now)
    return now, reads, replies, blocks


# -- check-and-reserve at MAIL FROM ----------------------------------------------
def demand(policy: Policy, declared_size: int) -> tuple[dict[str, int], dict[str, int]]:
    """(need, want) per unit code: the least a transaction can use, the most it reserves."""
    cfg = policy.limits.reservation
    size = declared_size if declared_size > 0 else 0
    # Unique units need no room to be admitted: a recipient counted already is free.
    need = {"m": 1, "r": 1, "b": max(1, size), "R": 0, "D": 0}
    want = {
        "m": 1,
        "r": cfg.recipients,
        "b": size or cfg.bytes,
        "R": cfg.recipients,
        "D": cfg.recipients,
    }
    return need, want


def _factor_spec(policy: Policy) -> dict[str, float]:
    warm, adapt = policy.limits.warmup, policy.limits.adaptive
    return {
        "wp": warm.period,
        "ws": warm.start_fraction,
        "wn": warm.new_after or 0,
        "ae": 1 if adapt.enabled else 0,
        "ah": adapt.half_life,
        "as": adapt.shrink,
        "am": adapt.min_factor,
    }


# The most members of one unique limit's set reserve.lua returns when that limit is
# near full; a bigger set is not sent (every recipient then counts as new).
KNOWN_MAX = 2000


def _spec_reserve(
    scopes: list[Scope], reads: list[Read], policy: Policy, rid: str, size: int, keys: list[str]
) -> str:
    need, want = demand(policy, size)
    out = []
    for scope, read in zip(scopes, reads, strict=True):
        counters, limits, scaled, meta = of_object(
            policy, "spec", scope.limits, partial(_scope_spec, scope, read), read, scope.meta
        )
        uniques = [
            [c, w, limits.get((c, w), -1), scaled, *_unique_read(keys, scope, c, w)[2:]]
            for c, w in read.uniques
        ]
        out.append({"c": counters, "u": uniques, "m": meta})
    return fastjson.dumps(
        {
            "id": rid,
            "lease": policy.limits.reservation.lease,
            "need": need,
            "want": want,
            "f": _factor_spec(policy),
            "kmax": KNOWN_MAX,
            "kedge": NSUB,
            "s": out,
        }
    )


def _scope_spec(
    scope: Scope, read: Read
) -> tuple[list[list[object]], dict[tuple[str, float], int], int, int]:
    """What of one scope's part of reserve.lua's spec is the same for every message
    of a plan: its counters, its limits by (unit code, window), scaled, meta."""
    limits = {(CODE[unit], r.window): r.limit for unit, r in scope.limits.rates()}
    scaled = 1 if scope.meta else 0
    counters: list[list[object]] = [
        [c, w, NSUB, limits.get((c, w), -1), scaled] for c, w in read.counters
    ]
    return counters, limits, scaled, 1 if scope.meta else 0


@dataclass
class Admission:
    """What reserve.lua answered for one group of scopes."""

    admitted: bool
    factor: float
    allot: dict[str, int]
    member: str  # the reservation reserve.lua stored ("" if none)
    states: list[ScopeState]
    limits: dict[tuple[str, str, float], int]  # (scope label, unit code, window) -> limit
    # Per unique unit whose allotment is short: each limit's counted members (None:
    # too many to send, nothing is known).
    known: dict[str, list[frozenset[str] | None]] = field(default_factory=dict)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_known(rows: list[Any]) -> dict[str, list[frozenset[str] | None]]:
    known: dict[str, list[frozenset[str] | None]] = {}
    for unit, complete, *members in rows:
        sent = frozenset(_text(m) for m in members) if int(complete) else None
        known.setdefault(_text(unit), []).append(sent)
    return known


def _parse_admission(scopes: list[Scope], reads: list[Read], reply: list[Any]) -> Admission:
    _, admitted, factor, flat, held, per_scope, known = reply
    flat = [_text(v) for v in flat]
    allot = {flat[n]: int(flat[n + 1]) for n in range(0, len(flat), 2)}
    states, limits = [], {}
    for scope, read, (counts, lims, ucounts, ulims, meta) in zip(
        scopes, reads, per_scope, strict=True
    ):
        states.append(
            ScopeState(
                scope,
                {k: int(v) for k, v in zip(read.counters, counts, strict=True)},
                {k: int(v) for k, v in zip(read.uniques, ucounts, strict=True)},
                Meta.parse([_text(v) for v in meta]),
            )
        )
        for (code, window), limit in zip(
            [*read.counters, *read.uniques], [*lims, *ulims], strict=True
        ):
            limits[(scope.label, code, window)] = int(limit)
    return Admission(
        int(admitted) == 1,
        float(_text(factor)),
        allot,
        _text(held),
        states,
        limits,
        _parse_known(known),
    )


def script_keys(group: list[Scope]) -> list[str]:
    """KEYS of reserve.lua and commit.lua: each scope's hash and its reservations."""
    return [k for scope in group for k in (scope.key, scope.reservations)]


def reserve_groups(
    store: RedisStore,
    policy: Policy,
    groups: list[list[Scope]],
    block_subjects: list[Subject],
    rid: str,
    size: int,
    clock: str = "",
    extra: list[PendingRead] | None = None,
) -> tuple[float, list[Admission], list[BlockRecord]]:
    """One round trip: block records of `block_subjects`, check-and-reserve per group,
    and the commands of `extra` (other features' MAIL FROM reads, handed their replies)."""

    def queue(pipe: redis.client.Pipeline, group: list[Scope], reads: list[Read]) -> None:
        keys = script_keys(group)
        spec = _spec_reserve(group, reads, policy, rid, size, keys)
        scripts.evalsha(pipe, "reserve", keys, [clock, spec])

    now, reads, replies, blocks = _mail_round_trip(
        store, policy, groups, block_subjects, extra, queue, "rate-limit admission"
    )
    admissions = [
        _parse_admission(group, group_reads, reply)
        for group, group_reads, reply in zip(groups, reads, replies, strict=True)
    ]
    return now, admissions, blocks


def _bindings(admissions: list[Admission]) -> list[Binding]:
    """The limits as reserve.lua applied them: evidence, and what `left` means."""
    out = []
    for adm in admissions:
        for st in adm.states:
            for unit, rate in st.scope.limits.rates():
                key = (CODE[unit], rate.window)
                count = (st.uniques if unit in UNIQUE_UNITS else st.counters).get(key, 0)
                limit = adm.limits.get((st.scope.label, *key), rate.limit)
                out.append(Binding(st.scope.label, unit, rate.window, limit, rate.limit, count))
    return out


def fetch(
    store: RedisStore,
    policy: Policy,
    sender: Sender,
    message: Message,
    clock: str = "",
    rid: str = "",
    size: int = 0,
) -> LimitState:
    """Blocks, and admission: the transaction holds a reservation if every group admits it."""
    rid = rid or unique_id()
    groups = tag_groups(scopes_for(policy, sender, message.mail_from or ""))
    ceiling = global_scope(policy)
    if ceiling is not None:
        groups.append([ceiling])
    extra = [p for p in (read(policy, sender, message, store) for read in MAIL_READS) if p]
    now, admissions, blocks = reserve_groups(
        store, policy, groups, sender.subjects(message), rid, size, clock, extra
    )
    states = [adm.states for adm in admissions]
    vps = states[0][0]
    factor = factor_for(vps.meta, policy, now)
    binds = _bindings(admissions)
    allot: dict[str, int] = {}
    for adm in admissions:
        for code, amount in adm.allot.items():
            allot[code] = min(amount, allot.get(code, amount))
    # Free to write to: what every near-full unique limit counted already. A limit
    # that sent nothing had room for the whole per-message allowance.
    known: dict[str, frozenset[str]] = {}
    for adm in admissions:
        for code, sets in adm.known.items():
            for members in sets:
                have = members if members is not None else frozenset()
                known[code] = known[code] & have if code in known else have
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
        rid=rid,
        members=[adm.member for adm in admissions],
        admitted=all(adm.admitted for adm in admissions),
        allot=allot,
        want=demand(policy, size)[1],
        known=known,
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
    return sorted({member(v) for v in values})


def _ttl(scope: Scope, policy: Policy) -> int:
    cfg = policy.limits
    longest = max([r.window for _, r in scope.limits.rates()] + [cfg.escalation.period])
    ttl = longest * (1 + 1 / NSUB) + 60
    if cfg.escalation.enabled:
        ttl = max(ttl, cfg.escalation.memory)
    if scope.meta:
        ttl = max(ttl, cfg.warmup.period, 4 * cfg.adaptive.half_life, 3 * cfg.burst.baseline_period)
    return int(ttl) + 1


def _scope_commit(
    st: ScopeState, usage: Usage, policy: Policy, release: str = ""
) -> dict[str, Any] | None:
    amounts = {"m": 1, "r": len(usage.recipients), "b": usage.size} if usage.accepted else {}
    hit = 1 if st.scope.label in usage.hits else 0
    counters = []
    once = 1 if policy.limits.escalation.distinct_hits else 0
    for code, window in st.counters:
        amount = hit if code == HITS else amounts.get(code, 0)
        if amount:
            counters.append([code, window, NSUB, amount, once if code == HITS else 0])
    uniques: list[tuple[str, float, list[str], str]] = []
    domains = [r.rsplit("@", 1)[-1] for r in usage.recipients]
    exact = limited_uniques(st.scope)
    for code, window in st.uniques:
        values = usage.recipients if code == "R" else domains
        zkey = distinct_key(st.scope, code, window) if (code, window) in exact else ""
        uniques.append((code, window, _members(values) if usage.accepted else [], zkey))
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
    if release:
        spec["q"] = release
    if not counters and not any(u[2] for u in uniques) and not {"fs", "p", "bl", "q"} & set(spec):
        return None
    return spec


def queue_commit(pipe: redis.client.Pipeline, state: LimitState, usage: Usage) -> None:
    """Queue commit.lua for each group on the end-of-message pipeline: count what
    was used and give the reservation back, in one script call per group."""
    members = [""] * len(state.groups) if state.settled else state.members
    for group, held in zip(state.groups, members, strict=False):
        specs = [(st, _scope_commit(st, usage, state.policy, held)) for st in group]
        todo = [(st, spec) for st, spec in specs if spec is not None]
        if todo:
            keys = script_keys([st.scope for st, _ in todo])
            for st, spec in todo:  # the unique counts' keys: declared, as KEYS indices
                spec["u"] = [_unique_commit(keys, st.scope, u) for u in spec["u"]]
            body = fastjson.dumps({"s": [spec for _, spec in todo]})
            scripts.evalsha(pipe, "commit", keys, [state.clock, body])
    state.settled = True


def queue_release(pipe: redis.client.Pipeline, state: LimitState) -> None:
    """Give the reservation back (aborted, refused at RCPT, connection closed)."""
    if state.settled:
        return
    for group, held in zip(state.groups, state.members, strict=False):
        if held:
            body = fastjson.dumps(
                {"s": [{"ttl": _ttl(st.scope, state.policy), "q": held} for st in group]}
            )
            keys = script_keys([st.scope for st in group])
            scripts.evalsha(pipe, "commit", keys, [state.clock, body])
    state.settled = True
