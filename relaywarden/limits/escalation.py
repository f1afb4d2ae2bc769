"""Escalation: repeated limit hits or bursts block the subject automatically, for
longer each time, and the abuse team is told (webhook and/or email).

Blocking and notifying happen on one background thread fed by a bounded queue:
a milter thread only enqueues, so a slow webhook or a Redis hiccup here never
delays mail. A full queue drops the job (logged): the next hit enqueues again.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from relaywarden import blocking, metrics
from relaywarden.errors import StoreError
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.policy.limits import EmailSection, WebhookSection
from relaywarden.store import RedisStore
from relaywarden.subjects import Subject

log = logging.getLogger("relaywarden.escalation")
ACTOR = "relaywarden"


@dataclass(frozen=True)
class Job:
    store: RedisStore
    policy: Policy
    subject: Subject
    key: str  # the subject's state hash: where its count of automatic blocks lives
    evidence: dict[str, Any] = field(default_factory=dict)


def block_duration(policy: Policy, earlier_blocks: int) -> float:
    esc = policy.limits.escalation
    return float(min(esc.max_block, esc.block_for * esc.growth**earlier_blocks))


def escalate(job: Job, now: float | None = None) -> dict[str, Any] | None:
    """Block `job.subject` unless it already is; the notice sent, or None."""
    store, esc = job.store, job.policy.limits.escalation
    if store.blocks_for([job.subject]):
        return None
    with_redis = store.client.pipeline(transaction=False)
    with_redis.hincrby(job.key, "nb", 1)
    with_redis.expire(job.key, int(esc.memory) + 1)
    try:
        count, _ = with_redis.execute()
    except Exception as exc:
        raise StoreError(f"redis escalation count: {exc}") from exc
    duration = block_duration(job.policy, int(count) - 1)
    reason = f"automatic: {esc.hits} rate-limit hits or bursts within {format_duration(esc.period)}"
    record = blocking.block(
        store,
        job.subject,
        actor=ACTOR,
        reason=reason,
        duration=duration,
        action=esc.action,
        via="milter",
        now=now,
    )
    return {
        "event": "relaywarden.auto-block",
        "subject": str(job.subject),
        "action": record.action,
        "reason": reason,
        "since": record.since,
        "until": record.until,
        "duration": format_duration(duration),
        "automatic_blocks": int(count),
        "evidence": job.evidence,
        "unblock": f"relaywarden unblock {job.subject} --reason TEXT",
    }


def retrying(
    what: str, attempts: int, backoff: float, send: Callable[[], bool], sleep: Any
) -> bool:
    """Try `send` up to `attempts` times, waiting backoff, 2 x backoff, ... between."""
    for attempt in range(attempts):
        try:
            if send():
                return True
        except OSError as exc:  # URLError, HTTPError, SMTPException, timeouts
            log.warning("%s attempt %d failed: %s", what, attempt + 1, exc)
        if attempt + 1 < attempts:
            sleep(backoff * 2**attempt)
    log.error("%s gave up after %d attempts", what, attempts)
    return False


def post_webhook(cfg: WebhookSection, notice: dict[str, Any], sleep: Any = time.sleep) -> bool:
    """POST the notice as JSON; retried with exponential backoff, `attempts` at most."""
    body = json.dumps(notice, default=str).encode()

    def send() -> bool:
        request = urllib.request.Request(
            cfg.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=cfg.timeout) as response:
            return bool(200 <= response.status < 300)

    return retrying("webhook", cfg.attempts, cfg.backoff, send, sleep)


def notice_sender(policy: Policy) -> str:
    """`[limits.escalation.email] sender`, else relaywarden@ the relay's own name:
    a sender the relay's own checks accept (a real domain, no customer's)."""
    configured = policy.limits.escalation.email.sender
    if configured:
        return configured
    host = policy.relay.hostnames[0] if policy.relay.hostnames else socket.gethostname()
    return f"relaywarden@{host}" if "." in host else "relaywarden@localhost.localdomain"


def notice_email(cfg: EmailSection, notice: dict[str, Any], sender: str) -> EmailMessage:
    """The notice as mail, with the Date and Message-ID the header check asks of any message."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(cfg.to)
    # The subject is validated (no control characters): safe in a header.
    mail["Subject"] = f"RelayWarden automatic block: {notice['subject']}"
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid("relaywarden", sender.rsplit("@", 1)[-1])
    mail.set_content(
        f"{notice['subject']} was blocked automatically ({notice['action']}) "
        f"for {notice['duration']}: {notice['reason']}.\n\n"
        f"To lift it: {notice['unblock']}\n\nThe notice:\n"
        + json.dumps(notice, indent=2, default=str)
    )
    return mail


def send_email(
    cfg: EmailSection, notice: dict[str, Any], sleep: Any = time.sleep, sender: str = ""
) -> bool:
    """Mail the notice to the abuse team through the relay; retried like the webhook."""
    mail = notice_email(cfg, notice, sender or cfg.sender or "relaywarden@localhost.localdomain")
    host, _, port = cfg.relay.rpartition(":")

    def send() -> bool:
        with smtplib.SMTP(host, int(port), timeout=cfg.timeout) as smtp:
            smtp.send_message(mail)
        return True

    return retrying("notice email", cfg.attempts, cfg.backoff, send, sleep)


def _iso(epoch: object) -> object:
    if not isinstance(epoch, int | float):
        return epoch  # None: until lifted
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def log_block(notice: dict[str, Any]) -> None:
    """One log record whose fields are the notice's (not a JSON string inside the
    JSON line), with times as ISO 8601 UTC rather than epoch floats."""
    fields = {**notice, "since": _iso(notice.get("since")), "until": _iso(notice.get("until"))}
    fields["event"] = "auto-block"
    fields["message"] = f"automatic block of {notice['subject']} for {notice['duration']}"
    log.warning(fields["message"], extra={"fields": fields})


class Escalator:
    """The background thread; one per process, started on first use."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="relaywarden-escalation", daemon=True
                )
                self._thread.start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            metrics.ESCALATION_DROPPED.inc()
            log.error("escalation queue full; dropped the job for %s", job.subject)

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                notice = escalate(job)
                if notice is not None:
                    metrics.AUTO_BLOCKS.labels(kind=job.subject.kind).inc()
                    log_block(notice)
                    esc = job.policy.limits.escalation
                    if esc.webhook.url and not post_webhook(esc.webhook, notice):
                        metrics.NOTICE_FAILURES.labels(channel="webhook").inc()
                    sender = notice_sender(job.policy)
                    if esc.email.to and not send_email(esc.email, notice, sender=sender):
                        metrics.NOTICE_FAILURES.labels(channel="email").inc()
            except Exception:  # the thread must outlive any one job
                log.exception("escalation of %s failed", job.subject)
            finally:
                self.jobs.task_done()


ESCALATOR = Escalator()
metrics.ESCALATION_QUEUE.set_function(ESCALATOR.jobs.qsize)
