"""The end-of-message hook: true the reservation up (commit what was accepted, give
back the rest), count limit hits, feed findings back into the VPS's penalty, and
hand repeat offenders to escalation. The abandon hook gives a reservation back
when a transaction ends without a decision."""

from __future__ import annotations

import redis

from relaywarden.limits.escalation import ESCALATOR, Job
from relaywarden.limits.fetch import LimitState, Usage, queue_commit, queue_release
from relaywarden.limits.model import HITS, ScopeState
from relaywarden.message import Message
from relaywarden.policy import Policy
from relaywarden.store import Outcome, RedisStore, after_recording
from relaywarden.verdict import Action, Finding

NOTE = "limits"
# Checks whose forced findings name a "subject" in their evidence and count as
# hits of it (relaywarden/outcomes/check.py).
SUBJECT_HITS = frozenset({"outcomes"})


def _is_feedback(finding: Finding) -> bool:
    """A rate-limit hit, a burst or a block says nothing new about the mail's quality:
    a quarantine for a burst alone must not shrink the limits of the send it stopped."""
    return finding.check not in ("blocks", "limits")


def _penalty(outcome: Outcome, policy: Policy) -> float:
    verdict = outcome.verdict
    cfg = policy.limits.adaptive
    if not cfg.enabled or not any(_is_feedback(f) for f in verdict.findings):
        return 0.0
    if verdict.action == Action.REJECT:
        return cfg.reject_penalty
    if verdict.action == Action.QUARANTINE:
        return cfg.quarantine_penalty
    return 0.0


def _hit_labels(findings: tuple[Finding, ...], state: LimitState) -> set[str]:
    labels: set[str] = set()
    if any(f.check == "blocks" for f in findings):
        return labels  # a blocked sender's retries are the block working, not new hits
    for f in findings:
        if f.check in SUBJECT_HITS and f.action is not None:
            # A forced outcome finding (bounces, complaints, failed logins) is a
            # hit of the subject it names, like a rate-limit hit: it escalates.
            labels.add(str(f.evidence.get("subject", "")))
            continue
        if f.check != "limits":
            continue
        if f.name == "rate-limit":
            labels.add(str(f.evidence.get("scope", "")))
        else:  # a burst is the VPS's doing
            labels.add(state.vps.scope.label)
    labels |= state.rcpt_hits  # recipients refused for a limit count as hits too
    labels.discard("global")  # nobody to block for the relay-wide ceiling
    return labels - state.hit_scopes


def _escalate(
    store: RedisStore,
    message: Message,
    state: LimitState,
    st: ScopeState,
    evidence: dict[str, object],
) -> None:
    esc = state.policy.limits.escalation
    before = st.counters.get((HITS, esc.period), 0)
    subject = st.scope.block_subject  # a sender: only within the customer that sent
    if esc.enabled and subject is not None and before + 1 >= esc.hits:
        job = Job(store, state.policy, subject, st.scope.key, evidence, state.clock)
        # Queued once the pipeline that counts this hit has run: escalation re-checks
        # the hits, and submitted earlier its thread could read them one short and
        # never block (the flaky e2e "timed out waiting for the automatic block").
        after_recording(message, lambda: ESCALATOR.submit(job))


def finish_hook(store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
    state = outcome.message.notes.get(NOTE)
    if not isinstance(state, LimitState):
        return
    verdict = outcome.verdict
    at_end = outcome.event.get("stage") == "eom"
    accepted = at_end and verdict.action in (Action.ACCEPT, Action.QUARANTINE)
    if accepted and state.committed:
        return
    hits = _hit_labels(verdict.findings, state)
    msg = outcome.message
    usage = Usage(
        accepted=accepted,
        recipients=list(msg.rcpts),
        size=msg.body_size,
        penalty=_penalty(outcome, state.policy),
        hits=frozenset(hits),
    )
    queue_commit(pipe, state, usage)
    state.hit_scopes |= hits
    state.committed = state.committed or accepted
    evidence: dict[str, object] = {
        "findings": [f.as_dict() for f in verdict.findings if f.check == "limits"],
        "ref": verdict.ref,
    }
    for st in state.scope_states():
        if st.scope.label in hits:
            _escalate(store, msg, state, st, evidence)


def abandon_hook(store: RedisStore, pipe: redis.client.Pipeline, message: Message) -> None:
    """No final decision (abort, all recipients refused, close): give the reservation
    back, and count the hits of recipients refused for a limit."""
    state = message.notes.get(NOTE)
    if not isinstance(state, LimitState):
        return
    hits = _hit_labels((), state)
    if not hits:
        queue_release(pipe, state)
        return
    queue_commit(pipe, state, Usage(False, [], 0, 0.0, frozenset(hits)))
    state.hit_scopes |= hits
    evidence: dict[str, object] = {"findings": ["recipients refused: rate limit"]}
    for st in state.scope_states():
        if st.scope.label in hits:
            _escalate(store, message, state, st, evidence)


RedisStore.finish_hooks.append(finish_hook)
RedisStore.abandon_hooks.append(abandon_hook)
