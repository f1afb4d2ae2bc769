"""The decision: a plain function of a message's facts, the policy and the counters.

No MTA here. The milter adapter, a replay of recorded traffic and the tests all
call `decide` the same way.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from relaywarden import metrics
from relaywarden.checks import Check, Context, Stage, addresses, blocks, headers, limits, sender
from relaywarden.content import checks as content
from relaywarden.content import reputation, rspamd
from relaywarden.errors import DependencyError
from relaywarden.identity import Sender
from relaywarden.logins import spread as logins
from relaywarden.message import Message
from relaywarden.outcomes import check as outcomes
from relaywarden.policy import Policy
from relaywarden.policy.derived import memo
from relaywarden.refs import new_ref
from relaywarden.store import Store
from relaywarden.verdict import Action, Finding, RejectReply, Reply, TempFailReply, Verdict

log = logging.getLogger("relaywarden.engine")

# Blocks come first: a blocked sender is refused before anything costs more.
# limits.MAIL goes just before them: its one round trip fetches the blocks too.
CHECKS: tuple[Check, ...] = (
    limits.MAIL,
    blocks.CHECK,
    # What earlier mail did and where the login was used: read in limits.MAIL's round trip.
    outcomes.MAIL,
    logins.MAIL,
    limits.RCPT,
    limits.EOM,
    addresses.ENVELOPE,
    addresses.FROM_HEADER,
    sender.ENVELOPE,
    headers.CHECK,
    sender.MESSAGE,
    content.CHECK,
    reputation.CHECK,
    rspamd.CHECK,
)

# Fault injection for the end-to-end test of "an exception inside the engine":
# set only by the test harness, never in a policy file a provider could edit.
_FAILPOINT_SENDER = os.environ.get("RELAYWARDEN_FAILPOINT_SENDER", "")

DEPENDENCY_REPLY = {
    "redis": TempFailReply(451, "4.3.0", "Temporary relay problem, please retry later"),
    "dns": TempFailReply(451, "4.4.3", "Temporary DNS failure checking the sender, retry later"),
}


def _dependency_finding(check: Check, exc: DependencyError, policy: Policy) -> Finding | None:
    """What a failed dependency means for this message, per the policy's fail mode."""
    metrics.DEPENDENCY_ERRORS.labels(service=exc.service, check=check.name).inc()
    fail_open = _fail_mode(exc.service, policy) == "open"
    log.warning(
        "dependency failure in check %s (%s): %s; failing %s",
        check.name,
        exc.service,
        exc,
        "open" if fail_open else "closed",
    )
    if fail_open:
        return None
    return Finding(
        check=check.name,
        name=f"{exc.service}-unavailable",
        evidence={"error": type(exc).__name__},
        action=Action.TEMPFAIL,
        reply=DEPENDENCY_REPLY.get(exc.service, DEPENDENCY_REPLY["redis"]),
        reason=f"{exc.service} unavailable",
    )


def _fail_mode(service: str, policy: Policy) -> str:
    section = getattr(policy, service, None)
    return str(getattr(section, "on_error", "tempfail"))


def body_needed(policy: Policy, checks: Sequence[Check] = CHECKS) -> bool:
    """Whether any check reads the body under `policy` (else Postfix need not send it)."""
    if checks is not CHECKS:
        return any(check.needs_body(policy) for check in checks)
    cache = memo(policy)  # asked at every connection's negotiation
    if "body_needed" not in cache:
        cache["body_needed"] = any(check.needs_body(policy) for check in checks)
    return bool(cache["body_needed"])


def run_checks(checks: Sequence[Check], ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check.run(ctx))
        except DependencyError as exc:
            failure = _dependency_finding(check, exc, ctx.policy)
            if failure is not None:
                findings.append(failure)
        if any(f.action == Action.REJECT for f in findings):
            break  # nothing later can make a reject milder; save the lookups
    return findings


def default_reply(action: Action, reason: str, ref: str) -> Reply | None:
    if action == Action.REJECT:
        return RejectReply(550, "5.7.1", f"Message refused by relay policy: {reason} (ref {ref})")
    if action == Action.TEMPFAIL:
        return TempFailReply(
            451, "4.7.1", f"Message deferred by relay policy: {reason} (ref {ref})"
        )
    return None


def with_ref(reply: Reply, ref: str) -> Reply:
    """The same reply, its text ending with the reference id the abuse team searches for."""
    return type(reply)(reply.code, reply.enhanced, f"{reply.text} (ref {ref})")


def combine(findings: Sequence[Finding], policy: Policy, ref: str) -> Verdict:
    """Findings add up; a forced action or the score threshold, whichever is harsher, wins."""
    score = round(sum(f.score for f in findings), 3)
    action = policy.scoring.action_for(score)
    forced = [f for f in findings if f.action is not None]
    strongest = max(forced, key=lambda f: f.action or 0, default=None)
    if strongest is not None and strongest.action is not None and strongest.action >= action:
        action = strongest.action
        reply = with_ref(strongest.reply, ref) if strongest.reply else None
        reason = strongest.reason or "policy"
    else:
        scored = max(findings, key=lambda f: f.score, default=None)
        reason = scored.reason if scored is not None and scored.reason else "policy"
        reply = None
    if reply is None:
        reply = default_reply(action, reason, ref)
    return Verdict(action=action, reply=reply, score=score, findings=tuple(findings), ref=ref)


def decide(
    message: Message,
    sender: Sender,
    policy: Policy,
    store: Store,
    resolver: object = None,
    *,
    stage: Stage = Stage.EOM,
    rcpt: str = "",
    ref: str | None = None,
    now: float | None = None,
    checks: Sequence[Check] = CHECKS,
) -> Verdict:
    """The verdict on `message` at `stage`, running the checks that belong to it."""
    if _FAILPOINT_SENDER and message.mail_from == _FAILPOINT_SENDER:
        raise RuntimeError("failpoint: engine exception requested by the test harness")
    ctx = Context(
        message=message,
        sender=sender,
        policy=policy,
        store=store,
        resolver=resolver,
        now=time.time() if now is None else now,
        rcpt=rcpt,
    )
    findings = run_checks([c for c in checks if c.stage == stage], ctx)
    return combine(findings, policy, ref or new_ref())
