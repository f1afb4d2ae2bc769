"""Shadow mode: what `[milter] mode = "shadow"` applies instead of a verdict.

The verdict is computed exactly as in enforce mode; the message is accepted,
and the verdict travels along as `would`, so the decision log, the event stream
(and so the desk and `relaywarden status`) show what enforcing would have done.
Accepting means no quarantine index entry, no penalty and counters committed as
for accepted mail: baselines and first-seen times are learnt meanwhile.
"""

from __future__ import annotations

from dataclasses import replace

from relaywarden.policy import Policy
from relaywarden.verdict import Action, Verdict


def active(policy: Policy) -> bool:
    return policy.milter.mode == "shadow"


def shadowed(verdict: Verdict) -> Verdict:
    """Accept, remembering what enforce mode would have done."""
    if verdict.would is not None or verdict.action == Action.ACCEPT:
        return verdict
    return replace(
        verdict, action=Action.ACCEPT, reply=None, would=verdict.action, would_reply=verdict.reply
    )


def effective(verdict: Verdict) -> Action:
    """The action enforce mode takes for this verdict."""
    return verdict.would if verdict.would is not None else verdict.action


def refuses(verdict: Verdict) -> bool:
    """Would enforce mode refuse the message (tempfail, discard or reject)?"""
    return effective(verdict) > Action.QUARANTINE
