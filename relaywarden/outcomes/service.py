"""Wiring outcomes and logins into a process: the end-of-message hooks, the
watcher (as a thread of `relaywarden run` or on its own), its warning notices,
and reading a subject's outcomes for `relaywarden status` and the desk."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

from relaywarden.keys import digest
from relaywarden.limits.escalation import notice_sender
from relaywarden.logins import block as login_block
from relaywarden.logins.spread import networks_key
from relaywarden.outcomes import counters, record
from relaywarden.outcomes.check import complaint_share, judge, warnings
from relaywarden.outcomes.counters import NSUB, Tally
from relaywarden.outcomes.notify import NOTIFIER, deliver
from relaywarden.outcomes.watcher import Watcher, follow_in_thread
from relaywarden.policy import Policy
from relaywarden.runtime import Runtime
from relaywarden.store import RedisStore, redis_errors
from relaywarden.subjects import Subject, parse_subject
from relaywarden.verdict import Finding


def attach(runtime: Runtime) -> threading.Event | None:
    """Called once by `relaywarden run`: hooks, and the watcher thread if configured."""
    record.install(lambda: runtime.policy)
    login_block.install(lambda: runtime.policy)
    cfg = runtime.policy.outcomes
    if not (cfg.enabled and cfg.watch_in_milter and cfg.log_file):
        return None
    from relaywarden.milter import workers

    if workers.INDEX not in (None, 0):
        return None  # one watcher per relay: worker 0 (another would only find the work done)
    watcher = Watcher(runtime.store, runtime.policy, notify=warner(runtime.store, runtime.policy))
    return follow_in_thread(watcher)


def tallies(store: RedisStore, policy: Policy, subjects: list[Subject], now: float) -> list[Tally]:
    prefix, window = store.keys.prefix, policy.outcomes.window
    with redis_errors("outcome read"):
        pipe = store.client.pipeline(transaction=False)
        for subject in subjects:
            pipe.hgetall(counters.window_key(prefix, subject))
        rows = pipe.execute()
    return [
        Tally(str(s), counters.counts(row or {}, window, NSUB, now))
        for s, row in zip(subjects, rows, strict=True)
    ]


def warner(store: RedisStore, policy: Policy) -> Any:
    """The watcher's callback: notices for subjects over a warning line, once per window."""

    def notify(subjects: list[str]) -> None:
        complaints = policy.complaints.threshold if policy.complaints.enabled else None
        found = warnings(
            tallies(store, policy, [parse_subject(s) for s in subjects], time.time()),
            policy.outcomes,
            complaints,
        )
        cfg = policy.outcomes
        for notice in found:
            key = f"{store.keys.prefix}:out:warned:{digest(notice['subject'] + notice['kind'])}"
            if store.client.set(key, "1", nx=True, ex=int(cfg.window)):
                title = f"RelayWarden warning: {notice['subject']} {notice['kind']}"
                sender = notice_sender(policy, cfg.email.sender)
                NOTIFIER.submit(
                    functools.partial(deliver, cfg.webhook, cfg.email, title, notice, sender)
                )

    return notify


@dataclass(frozen=True)
class SubjectOutcomes:
    """A subject's outcomes, as `relaywarden status` and the desk show them."""

    subject: str
    window: str
    counts: dict[str, int]
    attempts: int
    shares: dict[str, float]
    thresholds: dict[str, dict[str, Any]]
    per_hour: dict[str, list[int]]
    findings: list[Finding]
    networks: list[tuple[str, float]]
    enforced: bool = False  # [outcomes] enabled: findings act at MAIL FROM

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "window": self.window,
            "counts": self.counts,
            "attempts": self.attempts,
            "shares": self.shares,
            "thresholds": self.thresholds,
            "per_hour": self.per_hour,
            "findings": [f.as_dict() for f in self.findings],
            "networks": [{"network": n, "last_seen": t} for n, t in self.networks],
            "enforced": self.enforced,
        }


def subject_outcomes(
    store: RedisStore, policy: Policy, subject: Subject, now: float | None = None
) -> SubjectOutcomes:
    from relaywarden.logins.spread import judge as judge_login
    from relaywarden.policy.durations import format_duration

    now = time.time() if now is None else now
    cfg = policy.outcomes
    (tally,) = tallies(store, policy, [subject], now)
    with redis_errors("outcome read"):
        day = store.client.hgetall(counters.day_key(store.keys.prefix, subject))
        nets: list[tuple[bytes, float]] = []
        if subject.kind == "user":
            nets = store.client.zrangebyscore(  # type: ignore[assignment]
                networks_key(store.keys.prefix, subject.value),
                now - policy.logins.window,
                "+inf",
                withscores=True,
            )
    networks = [(n.decode(), float(t)) for n, t in nets]
    # Judged against the thresholds even where [outcomes] is not enforced yet:
    # the desk shows what would cross, and `enforced` says whether it does.
    findings = judge([tally], cfg.model_copy(update={"enabled": True}), policy.complaints.threshold)
    if subject.kind == "user":
        findings += judge_login(subject.value, [n for n, _ in networks], policy.logins)
    thresholds: dict[str, dict[str, Any]] = {
        "bounced": {"share": cfg.bounced.share, "min_count": cfg.bounced.min_count},
        "unknown_recipients": {
            "share": cfg.unknown_recipients.share,
            "min_count": cfg.unknown_recipients.min_count,
        },
        "deferred": {"share": cfg.deferred.share, "min_count": cfg.deferred.min_count},
        "auth_failures": {"min_count": cfg.auth_failures.min_count},
        "complaints": {
            "share": policy.complaints.threshold.share,
            "min_count": policy.complaints.threshold.min_count,
        },
    }
    return SubjectOutcomes(
        subject=str(subject),
        window=format_duration(cfg.window),
        counts={counters.CODES[c]: n for c, n in tally.counts.items()},
        attempts=tally.attempts,
        shares={
            **{counters.CODES[c]: round(tally.share(c), 3) for c in ("b", "u", "f")},
            "complaints": round(complaint_share(tally), 4),
        },
        thresholds=thresholds,
        per_hour={counters.CODES[c]: v for c, v in counters.per_hour(day or {}, now).items()},
        findings=findings,
        networks=networks,
        enforced=cfg.enabled,
    )


def outcomes_text(report: dict[str, Any]) -> str:
    """`relaywarden status` lines for a subject's outcomes, complaints and networks."""
    counts, shares, th = report["counts"], report["shares"], report["thresholds"]
    lines = [
        f"outcomes over the last {report['window']}: {report['attempts']} delivery attempts",
        f"  delivered {counts['delivered']}  deferred {counts['deferred']} "
        f"({shares['deferred']:.0%}, threshold {th['deferred']['share']:.0%} and "
        f"{th['deferred']['min_count']})",
        f"  bounced {counts['bounced']} ({shares['bounced']:.0%}, threshold "
        f"{th['bounced']['share']:.0%} and {th['bounced']['min_count']})  unknown recipients "
        f"{counts['unknown_recipients']} ({shares['unknown_recipients']:.0%}, threshold "
        f"{th['unknown_recipients']['share']:.0%} and {th['unknown_recipients']['min_count']})",
        f"  complaints {counts['complaints']} (threshold {th['complaints']['share']:.1%} of "
        f"delivered and {th['complaints']['min_count']})  failed logins "
        f"{counts['auth_failures']} (threshold {th['auth_failures']['min_count']})",
    ]
    hours = report["per_hour"]
    lines.append(
        "  last 24 h, per hour (oldest first): delivered "
        + " ".join(str(n) for n in hours["delivered"])
    )
    lines.append(
        "                                     bounced   "
        + " ".join(str(n) for n in hours["bounced"])
    )
    if report["networks"]:
        nets = ", ".join(n["network"] for n in report["networks"])
        lines.append(f"  networks of this login in the window ({len(report['networks'])}): {nets}")
    note = "" if report["enforced"] else " (not enforced: [outcomes] is off)"
    for finding in report["findings"]:
        explain = finding["evidence"].get("explain", "")
        lines.append(f"  FINDING {finding['name']}{note}: {explain}")
    return "\n".join(lines)
