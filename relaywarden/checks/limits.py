"""Rate limits and bursts: admission at MAIL FROM is check-and-reserve in one Redis
round trip (lua/reserve.lua); each RCPT and the end of message are decided
locally against the allotment that reservation holds."""

from __future__ import annotations

import os

from relaywarden.checks import BLOCKS_NOTE, Check, Context, Stage
from relaywarden.limits.fetch import LimitState, demand, fetch
from relaywarden.limits.model import CODE, Binding, Burst, member
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.policy.limits import Limits
from relaywarden.store import RedisStore
from relaywarden.verdict import Action, Finding, TempFailReply

NAME = "limits"
NOTE = "limits"  # Message.notes key of the LimitState

# Tests only: a fixed epoch for the Lua scripts instead of Redis TIME, set by
# the test harness in the milter's environment, never by a policy file.
_TEST_CLOCK = os.environ.get("RELAYWARDEN_TEST_CLOCK", "")


def _over(binding: Binding, factor_reasons: tuple[str, ...]) -> Finding:
    unit = binding.unit.replace("_", " ")
    window = format_duration(binding.window)
    evidence = binding.evidence()
    if factor_reasons and binding.scope.startswith("vps:"):
        evidence["reduced_by"] = list(factor_reasons)
    return Finding(
        check=NAME,
        name="rate-limit",
        evidence=evidence,
        action=Action.TEMPFAIL,
        reply=TempFailReply(451, "4.7.1", f"Rate limit reached ({unit} per {window}), try later"),
        reason="rate limit",
    )


def _burst(burst: Burst, score: float) -> Finding:
    return Finding(
        check=NAME,
        name=burst.name,
        score=score,
        evidence={
            "count": burst.count,
            "baseline": burst.expected,
            "threshold": burst.threshold,
            "window": burst.window,
        },
        reason="unusual burst of mail",
    )


def state_of(ctx: Context) -> LimitState | None:
    state = ctx.message.notes.get(NOTE)
    return state if isinstance(state, LimitState) else None


def run_mail(ctx: Context) -> list[Finding]:
    """Check-and-reserve: admitted only with a reservation (reserve.lua), else 451."""
    if not ctx.policy.limits.enabled or not isinstance(ctx.store, RedisStore):
        return []
    if _exempt(ctx):
        return []
    size = _declared_size(ctx.message.mail_params.get("SIZE", ""))
    state = fetch(ctx.store, ctx.policy, ctx.sender, ctx.message, _TEST_CLOCK, size=size)
    ctx.message.notes[NOTE] = state
    ctx.message.notes[BLOCKS_NOTE] = state.blocks
    findings = [_burst(b, ctx.policy.limits.burst.score) for b in state.bursts]
    if state.admitted:
        return findings
    need, _ = demand(ctx.policy, size)
    over = [
        _over(binding, state.factor.reasons)
        for unit, binding in state.allow.items()
        if need[CODE[unit]] > 0 and binding.left < need[CODE[unit]]
    ]
    # reserve.lua refused: at least one limit is short (the first if none reads so here).
    return findings + (over or [_over(next(iter(state.allow.values())), state.factor.reasons)])


def _exempt(ctx: Context) -> bool:
    """The relay's own mail (notices, bounces submitted over SMTP) never counts
    against, or gets blocked by, the relay's limits: `[limits] exempt` networks."""
    address = ctx.message.client_address
    return address is not None and any(
        address.version == net.version and address in net
        for net in ctx.policy.limits.exempt_networks
    )


def _declared_size(text: str) -> int:
    return int(text) if text.isdigit() and len(text) < 16 else 0


# Recipients beyond what one message may reserve while the window still has room:
# RFC 5321 4.5.3.1.10's "too many recipients"; the client sends them in another
# message (Postfix does), and it is no limit hit.
TOO_MANY = TempFailReply(
    452, "4.5.3", "Too many recipients for one message, send the rest separately"
)


def _too_many() -> Finding:
    return Finding(
        check=NAME,
        name="recipients-per-message",
        action=Action.TEMPFAIL,
        reply=TOO_MANY,
        reason="too many recipients in one message",
    )


def run_rcpt(ctx: Context) -> list[Finding]:
    """Decided locally against the MAIL FROM allotment: no round trip per recipient.
    A unique limit's allotment pays only for recipients (domains) it has not
    counted already in its window (`LimitState.known`)."""
    state = state_of(ctx)
    if state is None or not ctx.rcpt:
        return []
    msg, rcpt = ctx.message, ctx.rcpt.lower()
    rcpts = {r.lower() for r in msg.rcpts} | {rcpt}
    distinct = {"R": rcpts, "D": {r.rsplit("@", 1)[-1] for r in rcpts}}
    # unit -> (what it costs the allotment, what the message holds in all)
    wanted = {"recipients": (msg.rcpt_count + 1, msg.rcpt_count + 1)}
    for unit in ("unique_recipients", "unique_domains"):
        values = distinct[CODE[unit]]
        known = state.known.get(CODE[unit])
        new = values if known is None else {v for v in values if member(v) not in known}
        wanted[unit] = (len(new), len(values))
    for unit, (cost, count) in wanted.items():
        code = CODE[unit]
        if code not in state.allot:
            continue
        short = state.allot[code] < state.want[code]  # the limit, not the allowance
        if cost > state.allot[code] and short and unit in state.allow:
            state.rcpt_hits.add(state.allow[unit].scope)  # a hit, recorded at the end
            return [_over(state.allow[unit], state.factor.reasons)]
        if cost > state.allot[code] or count > state.want[code]:
            return [_too_many()]
    return []


def run_eom(ctx: Context) -> list[Finding]:
    state = state_of(ctx)
    if state is not None and _TEST_CLOCK:
        state.clock = _TEST_CLOCK  # the commit happens now, as Redis TIME would say
    if state is None or "b" not in state.allot or "bytes" not in state.allow:
        return []
    over = ctx.message.body_size > state.allot["b"]
    return [_over(state.allow["bytes"], state.factor.reasons)] if over else []


MAIL = Check("limits.mail", Stage.MAIL, run_mail)
RCPT = Check("limits.rcpt", Stage.RCPT, run_rcpt)
_BYTES_SEEN: tuple[Policy, bool] | None = None  # the last policy asked about


def uses_bytes(policy: Policy) -> bool:
    """True when any plan (any of its scopes), override or the global ceiling
    limits bytes."""
    global _BYTES_SEEN
    seen = _BYTES_SEEN
    if seen is not None and seen[0] is policy:  # asked once per connection: cache it
        return seen[1]
    limits = policy.limits
    scopes: list[Limits | None] = [limits.global_, *(o.limits for o in limits.overrides)]
    for plan in policy.plans.values():
        scopes += [plan, plan.customer, plan.user, plan.sender]
    result = any(scope is not None and scope.bytes for scope in scopes)
    _BYTES_SEEN = (policy, result)
    return result


# Bytes are counted from the body's size.
EOM = Check("limits.eom", Stage.EOM, run_eom, needs_body=uses_bytes)

# Registers the end-of-message commit on RedisStore.finish's pipeline.
from relaywarden.limits import hook as _hook  # noqa: E402,F401
