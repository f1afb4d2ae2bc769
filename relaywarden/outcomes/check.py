"""What earlier mail of this sender did, judged at its next MAIL FROM.

The counters are read on the MAIL FROM pipeline (`limits.fetch.MAIL_READS`, no
round trip of its own); `judge` is a plain function of the tallies and the
policy, shared by the milter, `relaywarden status` and the desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from relaywarden.checks import Check, Context, Stage
from relaywarden.identity import Sender
from relaywarden.limits.fetch import MAIL_READS, PendingRead
from relaywarden.message import Message
from relaywarden.outcomes import counters
from relaywarden.outcomes.counters import (
    AUTH_FAILED,
    BOUNCED,
    CODES,
    COMPLAINTS,
    DEFERRED,
    DELIVERED,
    NSUB,
    UNKNOWN_RCPT,
    Tally,
)
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.policy.outcomes import OutcomesSection, Threshold
from relaywarden.store import RedisStore
from relaywarden.subjects import Subject
from relaywarden.verdict import Action, Finding, RejectReply, Reply, TempFailReply

NAME = "outcomes"
NOTE = "outcomes"  # Message.notes key of the tallies read at MAIL FROM

_WORDS = {
    BOUNCED: "bounced",
    UNKNOWN_RCPT: "went to recipients that do not exist",
    DEFERRED: "were deferred",
}
_ACTIONS = {
    "tempfail": Action.TEMPFAIL,
    "quarantine": Action.QUARANTINE,
    "reject": Action.REJECT,
}


def subjects_of(sender: Sender) -> list[Subject]:
    out = [Subject("vps", sender.vps)]
    if sender.customer:
        out.append(Subject("customer", sender.customer))
    if sender.sasl_user:
        out.append(Subject("user", sender.sasl_user))
    return out


@dataclass
class OutcomeRead:
    """HGETALL of each subject's window hash, on the MAIL FROM pipeline."""

    policy: Policy
    message: Message
    subjects: list[Subject]
    prefix: str

    def queue(self, pipe: redis.client.Pipeline) -> int:
        for subject in self.subjects:
            pipe.hgetall(counters.window_key(self.prefix, subject))
        return len(self.subjects)

    def take(self, replies: list[Any], now: float) -> None:
        window = self.policy.outcomes.window
        self.message.notes[NOTE] = [
            Tally(str(subject), counters.counts(fields or {}, window, NSUB, now))
            for subject, fields in zip(self.subjects, replies, strict=True)
        ]


def mail_read(
    policy: Policy, sender: Sender, message: Message, store: RedisStore
) -> PendingRead | None:
    if not (policy.outcomes.enabled or policy.complaints.enabled):
        return None
    return OutcomeRead(policy, message, subjects_of(sender), store.keys.prefix)


def rules(cfg: OutcomesSection) -> list[tuple[str, Threshold]]:
    return [
        (BOUNCED, cfg.bounced),
        (UNKNOWN_RCPT, cfg.unknown_recipients),
        (DEFERRED, cfg.deferred),
    ]


def crosses(tally: Tally, code: str, share: float, min_count: int) -> bool:
    return tally.counts[code] >= min_count and tally.share(code) >= share


def explain(tally: Tally, code: str, share: float, min_count: int, window: float) -> str:
    """Which numbers crossed which threshold, in words (log, desk, status)."""
    return (
        f"{tally.subject}: {tally.counts[code]} of {tally.attempts} delivery attempts "
        f"{_WORDS[code]} ({tally.share(code):.0%}) in the last {format_duration(window)}; "
        f"the threshold is {share:.0%} and at least {min_count}"
    )


def _reply(action: Action, text: str) -> Reply | None:
    if action == Action.REJECT:
        return RejectReply(550, "5.7.1", text)
    if action == Action.TEMPFAIL:
        return TempFailReply(451, "4.7.1", text)
    return None


def _finding(
    name: str, action_name: str, score: float, evidence: dict[str, Any], text: str
) -> Finding:
    action = _ACTIONS.get(action_name)
    return Finding(
        check=NAME,
        name=name,
        score=score,
        evidence=evidence,
        action=action,
        reply=_reply(action, text) if action is not None else None,
        reason=text,
    )


def complaint_share(tally: Tally) -> float:
    """Complaints per delivered message (all of them when no delivery was counted)."""
    c = tally.counts[COMPLAINTS]
    return c / max(tally.counts[DELIVERED], c) if c else 0.0


def judge_complaints(tally: Tally, rule: Threshold, window: float) -> Finding | None:
    count, share = tally.counts[COMPLAINTS], complaint_share(tally)
    if count < rule.min_count or share < rule.share:
        return None
    explain = (
        f"{tally.subject}: {count} complaints against {tally.counts[DELIVERED]} delivered "
        f"messages ({share:.1%}) in the last {format_duration(window)}; the threshold is "
        f"{rule.share:.1%} and at least {rule.min_count}"
    )
    evidence = {
        "subject": tally.subject,
        "count": count,
        "delivered": tally.counts[DELIVERED],
        "share": round(share, 4),
        "threshold_share": rule.share,
        "threshold_count": rule.min_count,
        "window": format_duration(window),
        "explain": explain,
    }
    text = "Recipients reported too many of your recent messages as spam"
    return _finding("complaints", rule.action, rule.score, evidence, text)


def judge(
    tallies: list[Tally], cfg: OutcomesSection, complaints: Threshold | None = None
) -> list[Finding]:
    """Findings for every subject and kind over its threshold (complaints when given)."""
    findings = []
    window = format_duration(cfg.window)
    for tally in tallies:
        if complaints is not None:
            found = judge_complaints(tally, complaints, cfg.window)
            if found is not None:
                findings.append(found)
        if not cfg.enabled:
            continue
        for code, rule in rules(cfg):
            if not crosses(tally, code, rule.share, rule.min_count):
                continue
            evidence = {
                "subject": tally.subject,
                "count": tally.counts[code],
                "attempts": tally.attempts,
                "share": round(tally.share(code), 3),
                "threshold_share": rule.share,
                "threshold_count": rule.min_count,
                "window": window,
                "explain": explain(tally, code, rule.share, rule.min_count, cfg.window),
            }
            text = f"Too many of your recent messages {_WORDS[code]}; sending is paused"
            findings.append(
                _finding(CODES[code].replace("_", "-"), rule.action, rule.score, evidence, text)
            )
        rule_a = cfg.auth_failures
        if (
            tally.subject.startswith(("vps:", "user:"))
            and tally.counts[AUTH_FAILED] >= rule_a.min_count
        ):
            evidence = {
                "subject": tally.subject,
                "count": tally.counts[AUTH_FAILED],
                "threshold_count": rule_a.min_count,
                "window": window,
                "explain": (
                    f"{tally.subject}: {tally.counts[AUTH_FAILED]} failed SASL logins in the "
                    f"last {window}; the threshold is {rule_a.min_count}"
                ),
            }
            text = "Too many failed logins from your address; try later"
            findings.append(_finding("auth-failures", rule_a.action, rule_a.score, evidence, text))
    return findings


def warnings(
    tallies: list[Tally], cfg: OutcomesSection, complaints: Threshold | None = None
) -> list[dict[str, Any]]:
    """Subjects over a warning line (below or at the enforcing one): notices to send."""
    out = []
    for tally in tallies:
        if complaints is not None and complaints.warn_share and complaints.warn_min_count:
            count, share = tally.counts[COMPLAINTS], complaint_share(tally)
            if count >= complaints.warn_min_count and share >= complaints.warn_share:
                out.append(
                    {
                        "event": "relaywarden.outcome-warning",
                        "subject": tally.subject,
                        "kind": "complaints",
                        "count": count,
                        "delivered": tally.counts[DELIVERED],
                        "share": round(share, 4),
                        "warn_share": complaints.warn_share,
                        "warn_min_count": complaints.warn_min_count,
                        "enforced_share": complaints.share,
                        "enforced_min_count": complaints.min_count,
                        "window": format_duration(cfg.window),
                        "explain": (
                            f"{tally.subject}: {count} complaints against "
                            f"{tally.counts[DELIVERED]} delivered messages ({share:.1%}) in the "
                            f"last {format_duration(cfg.window)}; the warning line is "
                            f"{complaints.warn_share:.1%} and at least {complaints.warn_min_count}"
                        ),
                    }
                )
        if not cfg.enabled:
            continue
        for code, rule in rules(cfg):
            if rule.warn_share is None or rule.warn_min_count is None:
                continue
            if crosses(tally, code, rule.warn_share, rule.warn_min_count):
                out.append(
                    {
                        "event": "relaywarden.outcome-warning",
                        "subject": tally.subject,
                        "kind": CODES[code],
                        "count": tally.counts[code],
                        "attempts": tally.attempts,
                        "share": round(tally.share(code), 3),
                        "warn_share": rule.warn_share,
                        "warn_min_count": rule.warn_min_count,
                        "enforced_share": rule.share,
                        "enforced_min_count": rule.min_count,
                        "window": format_duration(cfg.window),
                        "explain": explain(
                            tally, code, rule.warn_share, rule.warn_min_count, cfg.window
                        ),
                    }
                )
    return out


def run_mail(ctx: Context) -> list[Finding]:
    tallies = ctx.message.notes.get(NOTE)
    if not isinstance(tallies, list):
        return []
    policy = ctx.policy
    return judge(
        tallies, policy.outcomes, policy.complaints.threshold if policy.complaints.enabled else None
    )


MAIL = Check("outcomes.mail", Stage.MAIL, run_mail)
MAIL_READS.append(mail_read)
