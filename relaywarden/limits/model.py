"""Pure rate-limit logic: which scopes apply to a sender, their effective limits
(warm-up, adaptive shrink), the allowance left and burst findings. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

from relaywarden.identity import Sender
from relaywarden.keys import digest
from relaywarden.policy import Policy
from relaywarden.policy.derived import memo, of_object
from relaywarden.policy.limits import Limits, Plan, Rate, plan_named
from relaywarden.returnpath import sender_key
from relaywarden.subjects import Subject

# Sub-buckets per counter window: a limit may refuse up to W/NSUB early, never late
# (see lua/check.lua for the bound).
NSUB = 10
# Unit codes in Redis fields (short: they are stored once per bucket).
CODE = {
    "messages": "m",
    "recipients": "r",
    "bytes": "b",
    "unique_recipients": "R",
    "unique_domains": "D",
}
HITS = "h"
UNIQUE_UNITS = ("unique_recipients", "unique_domains")
# A decayed penalty below this is history: the limits are back to the full plan.
FORGOTTEN = 0.01
META_FIELDS = ("fs", "p", "pt", "bm", "br", "bd", "bt", "nb")


@dataclass
class Scope:
    """One subject whose counters a message touches: a VPS, customer, login, sender."""

    subject: Subject | None  # None: the global ceiling
    key: str
    limits: Limits
    meta: bool = False  # the VPS: warm-up, penalty, baseline live in its hash
    owner: Subject | None = None  # a sender's: whose mail it is (Sender.owner)

    @property
    def label(self) -> str:
        return str(self.subject) if self.subject else "global"

    @property
    def block_subject(self) -> Subject | None:
        """What an automatic block of this scope blocks: a sender only within its
        owner (the customer whose mail earned the hits), never relay-wide."""
        if self.subject is not None and self.subject.kind == "sender" and self.owner:
            return Subject("sender", self.subject.value, within=self.owner)
        return self.subject

    @property
    def reservations(self) -> str:
        """The sorted set of live reservations (lua/reserve.lua): same hash tag."""
        return f"{self.key}:q"


def ring_keys(key: str, code: str, window: float) -> list[str]:
    """The three HyperLogLogs of a unique count (`code` over `window`) of the scope
    whose state hash is `key`: a ring of half-window buckets (lua/window.lua). Fixed
    names, so every script that touches them declares them in KEYS; same hash tag."""
    return [f"{key}:U{code}{window:g}:r{slot}" for slot in range(3)]


def distinct_key(scope: Scope, code: str, window: float) -> str:
    """The exact set (sorted set: member -> last counted) behind a unique-recipient or
    unique-domain limit of `scope`: same hash tag, declared in the scripts' KEYS."""
    return f"{scope.key}:Z{code}{window:g}"


def limited_uniques(scope: Scope) -> set[tuple[str, float]]:
    """The (unit code, window) of `scope`'s unique limits: counted exactly (a sorted
    set), so a recipient counted already is known; unique counts without a limit
    (burst detection) stay HyperLogLogs."""
    return {(CODE[u], r.window) for u, r in scope.limits.rates() if u in UNIQUE_UNITS}


def member(value: str) -> str:
    """A recipient (or domain) as the unique counters hold it: hashed, never the text."""
    return digest(value.lower())[:16]


def vps_tag(vps: str) -> str:
    return "v" + digest(vps)[:16]


def tag_for(sender: Sender) -> str:
    """One hash tag per customer, so its customer, login and sender keys sit in one
    Cluster slot. A VPS is keyed by itself alone (`vps_tag`): one VPS, one budget,
    whichever customers' logins it presents."""
    if sender.customer:
        return "c" + digest(sender.customer)[:16]
    return vps_tag(sender.vps)


def scope_key(prefix: str, tag: str, subject: Subject) -> str:
    # The subject the tag is made of (a customer, or a VPS in no inventory) needs
    # no second digest: shorter keys are less memory per VPS.
    owner = tag[0] == subject.kind[0] and tag[1:] == digest(subject.value)[:16]
    base = f"{prefix}:l:{{{tag}}}"
    return base if owner else f"{base}:{subject.kind[0]}{digest(str(subject))[:16]}"


def global_key(prefix: str) -> str:
    return f"{prefix}:l:{{global}}"


def plan_for(policy: Policy, sender: Sender) -> tuple[str, Plan, Limits]:
    """The plan in force and the per-VPS limits after overrides (customer, then VPS)."""
    cache = memo(policy)
    overrides = cache.get("overrides")
    if overrides is None:
        overrides = cache["overrides"] = {str(o.subject): o for o in policy.limits.overrides}
    chain = [overrides.get(f"customer:{sender.customer}"), overrides.get(f"vps:{sender.vps}")]
    name = sender.plan
    for override in chain:
        if override is not None and override.plan:
            name = override.plan
    found = cache.get(("plan", name))
    if found is None:
        plan = plan_named(policy.plans, name) or plan_named(policy.plans, "default")
        assert plan is not None  # "default" always resolves
        found = cache[("plan", name)] = (plan, plan.for_scope("vps") or Limits())
    plan, vps_limits = found
    for override in chain:
        if override is not None:
            vps_limits = vps_limits.overlay(override.limits)
    return name, plan, vps_limits


def scopes_for(policy: Policy, sender: Sender, mail_from: str) -> list[Scope]:
    """The tagged scopes of a sender (one Redis call); the VPS always first."""
    prefix = policy.redis.key_prefix
    tag = tag_for(sender)
    _, plan, vps_limits = plan_for(policy, sender)
    vps = Subject("vps", sender.vps)
    scopes = [Scope(vps, scope_key(prefix, vps_tag(sender.vps), vps), vps_limits, meta=True)]
    candidates: list[tuple[Subject | None, Limits | None]] = [
        (Subject("customer", sender.customer) if sender.customer else None, plan.customer),
        (Subject("user", sender.sasl_user) if sender.sasl_user else None, plan.user),
        (Subject("sender", sender_key(mail_from)) if mail_from else None, plan.sender),
    ]
    for subject, limits in candidates:
        if subject is not None and limits is not None:
            owner = sender.owner if subject.kind == "sender" else None
            scopes.append(Scope(subject, scope_key(prefix, tag, subject), limits, owner=owner))
    return scopes


def tag_groups(scopes: list[Scope]) -> list[list[Scope]]:
    """Scopes grouped by hash tag, in order (the VPS's group first): one script
    call per group, each on one Cluster slot."""
    groups: dict[str, list[Scope]] = {}
    for scope in scopes:
        groups.setdefault(scope.key.split("{", 1)[1].split("}", 1)[0], []).append(scope)
    return list(groups.values())


def global_scope(policy: Policy) -> Scope | None:
    limits = policy.limits.global_
    if not limits.rates():
        return None
    return Scope(None, global_key(policy.redis.key_prefix), limits)


@dataclass(frozen=True)
class Read:
    """What to read for one scope: counters (unit code, window) and unique counts."""

    counters: tuple[tuple[str, float], ...]
    uniques: tuple[tuple[str, float], ...]


def reads_for(scope: Scope, policy: Policy) -> Read:
    # Limits objects live as long as their policy (plan_for's memo).
    compute = partial(_reads, scope, policy)
    return of_object(policy, "reads", scope.limits, compute, scope.subject is None, scope.meta)


def _reads(scope: Scope, policy: Policy) -> Read:
    counters: list[tuple[str, float]] = []
    uniques: list[tuple[str, float]] = []
    for unit, rate in scope.limits.rates():
        target = uniques if unit in UNIQUE_UNITS else counters
        target.append((CODE[unit], rate.window))
    if scope.subject is not None:
        counters.append((HITS, policy.limits.escalation.period))
    if scope.meta and policy.limits.burst.enabled:
        window = policy.limits.burst.window
        counters.append(("m", window))
        uniques += [("R", window), ("D", window)]
    return Read(tuple(dict.fromkeys(counters)), tuple(dict.fromkeys(uniques)))


# -- effective limits ---------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    first_seen: float | None = None
    penalty: float = 0.0
    penalty_time: float | None = None
    baseline: tuple[float, float, float] = (0.0, 0.0, 0.0)  # messages, rcpts, domains /s
    baseline_time: float | None = None
    auto_blocks: int = 0

    @classmethod
    def parse(cls, values: list[str]) -> Meta:
        raw = dict(zip(META_FIELDS, values, strict=False))

        def num(name: str) -> float | None:
            text = raw.get(name, "")
            try:
                return float(text) if text else None
            except ValueError:
                return None

        return cls(
            first_seen=num("fs"),
            penalty=num("p") or 0.0,
            penalty_time=num("pt"),
            baseline=(num("bm") or 0.0, num("br") or 0.0, num("bd") or 0.0),
            baseline_time=num("bt"),
            auto_blocks=int(num("nb") or 0),
        )


@dataclass(frozen=True)
class Factor:
    """How much of the plan a VPS gets now, and why."""

    value: float
    warmup: float
    adaptive: float
    age: float | None
    penalty: float
    reasons: tuple[str, ...]


def factor_for(meta: Meta, policy: Policy, now: float) -> Factor:
    warm = policy.limits.warmup
    age = None if meta.first_seen is None else max(0.0, now - meta.first_seen)
    warmup = 1.0
    reasons: list[str] = []
    if warm.applies(meta.first_seen, now):
        progress = min(1.0, (age or 0.0) / warm.period)
        warmup = warm.start_fraction + (1 - warm.start_fraction) * progress
        if warmup < 1:
            reasons.append(f"warm-up {progress:.0%} of {warm.period / 86400:g}d")
    adapt = policy.limits.adaptive
    penalty = decayed_penalty(meta, adapt.half_life, now)
    adaptive = 1.0
    if adapt.enabled and penalty > 0:
        adaptive = max(adapt.min_factor, 1 - adapt.shrink * penalty)
        if adaptive < 1:
            reasons.append(f"recent findings (penalty {penalty:.2f})")
    return Factor(warmup * adaptive, warmup, adaptive, age, penalty, tuple(reasons))


def decayed_penalty(meta: Meta, half_life: float, now: float) -> float:
    if meta.penalty <= 0:
        return 0.0
    dt = max(0.0, now - (meta.penalty_time or now))
    left = float(meta.penalty * 0.5 ** (dt / half_life))
    return left if left >= FORGOTTEN else 0.0


def effective(rate: Rate, factor: float) -> int:
    """A limit scaled down, never to zero: a VPS can always send something."""
    return max(1, math.floor(rate.limit * factor + 1e-9))


# -- allowance ----------------------------------------------------------------
@dataclass(frozen=True)
class Binding:
    """The tightest limit of one unit: evidence for a finding and for `status`."""

    scope: str
    unit: str
    window: float
    limit: int
    plan_limit: int
    count: int

    @property
    def left(self) -> int:
        return self.limit - self.count

    def evidence(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "unit": self.unit,
            "window": self.window,
            "limit": self.limit,
            "plan_limit": self.plan_limit,
            "count": self.count,
        }


@dataclass
class ScopeState:
    scope: Scope
    counters: dict[tuple[str, float], int]
    uniques: dict[tuple[str, float], int]
    meta: Meta = field(default_factory=Meta)


def bindings(states: list[ScopeState], factor: Factor) -> list[Binding]:
    out = []
    for st in states:
        scale = factor.value if st.scope.meta else 1.0
        for unit, rate in st.scope.limits.rates():
            key = (CODE[unit], rate.window)
            count = (st.uniques if unit in UNIQUE_UNITS else st.counters).get(key, 0)
            limit = effective(rate, scale) if scale < 1 else rate.limit
            out.append(Binding(st.scope.label, unit, rate.window, limit, rate.limit, count))
    return out


def allowance(binds: list[Binding]) -> dict[str, Binding]:
    """Per unit, the binding limit: the one with the least left."""
    tightest: dict[str, Binding] = {}
    for b in binds:
        if b.unit not in tightest or b.left < tightest[b.unit].left:
            tightest[b.unit] = b
    return tightest


@dataclass(frozen=True)
class Burst:
    name: str
    count: int
    expected: float
    threshold: float
    window: float


def bursts(vps: ScopeState, policy: Policy, now: float) -> list[Burst]:
    cfg = policy.limits.burst
    if not cfg.enabled:
        return []
    # No baseline yet (seen for less than baseline_period): the plan and warm-up
    # govern it. A new customer sending within its plan is not a burst.
    first = vps.meta.first_seen
    if first is None or now - first < cfg.baseline_period:
        return []
    w = cfg.window
    since = vps.meta.baseline_time
    # The stored rates are as of their last update: a VPS silent since then is calmer.
    decay = math.exp(-max(0.0, now - since) / cfg.baseline_period) if since else 1.0
    observed = (
        ("burst-volume", vps.counters.get(("m", w), 0), vps.meta.baseline[0], cfg.floor),
        (
            "burst-unique-recipients",
            vps.uniques.get(("R", w), 0),
            vps.meta.baseline[1],
            cfg.unique_recipients_floor,
        ),
        (
            "burst-domain-spread",
            vps.uniques.get(("D", w), 0),
            vps.meta.baseline[2],
            cfg.unique_domains_floor,
        ),
    )
    found = []
    for name, count, rate, floor in observed:
        expected = rate * decay * w
        threshold = max(float(floor), cfg.factor * expected)
        if count > threshold:
            found.append(Burst(name, count, round(expected, 2), round(threshold, 2), w))
    return found
