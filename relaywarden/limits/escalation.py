"""Escalation: repeated limit hits or bursts block the subject automatically, for
longer each time, and the abuse team is told (webhook and/or email).

Blocking happens on a background thread fed by a bounded queue, notices on
another: a milter thread only enqueues, so a slow webhook or a Redis hiccup here
never delays mail, and notice retries never delay a block. A full queue drops
the job (logged): the next hit enqueues again. A block is re-checked when it is
carried out (hits now, no block in place) and claimed with SET NX, so two relays
seeing the same hit produce one block, one audit entry and one notice.
"""

from __future__ import annotations

import json
import logging
import queue
import re
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
from relaywarden.keys import digest
from relaywarden.limits import scripts
from relaywarden.limits.model import HITS, NSUB
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.policy.limits import EmailSection, WebhookSection
from relaywarden.store import RedisStore, redis_errors
from relaywarden.subjects import Subject

log = logging.getLogger("relaywarden.escalation")
ACTOR = "relaywarden"
HIT_FIELD = re.compile(rb"^h[0-9]")  # the hit counters' fields in a state hash


@dataclass(frozen=True)
class Job:
    store: RedisStore
    policy: Policy
    subject: Subject
    key: str  # the subject's state hash: where its count of automatic blocks lives
    evidence: dict[str, Any] = field(default_factory=dict)
    clock: str = ""  # the scripts' clock ("" = Redis TIME; tests inject one)


def block_duration(policy: Policy, earlier_blocks: int) -> float:
    esc = policy.limits.escalation
    return float(min(esc.max_block, esc.block_for * esc.growth**earlier_blocks))


def claim_key(store: RedisStore, subject: Subject) -> str:
    """Held while an automatic block of `subject` stands: the one relay (or thread)
    that sets it carries the block out; its value is the subject's state hash."""
    return f"{store.keys.prefix}:esc:{{{digest(str(subject))}}}"


def current_hits(store: RedisStore, key: str, period: float, clock: str = "") -> int:
    """The subject's hits in the escalation period, read now (check.lua)."""
    spec = json.dumps({"s": [{"c": [[HITS, period, NSUB]], "u": [], "m": 0}]})
    reply = scripts.run(
        store.client, lambda pipe: scripts.evalsha(pipe, "check", [key], [clock, spec]), "hits"
    )
    return int(reply[0][1][0][0][0])


def _earlier_blocks(store: RedisStore, key: str, memory: float, now: float) -> list[float]:
    """Times of this subject's earlier automatic blocks still within `memory`."""
    with redis_errors("escalation history"):
        raw = store.client.hget(key, "nbt")
    times = []
    for word in (raw.decode() if isinstance(raw, bytes) else str(raw or "")).split():
        try:
            t = float(word)
        except ValueError:
            continue
        if now - t < memory:
            times.append(t)
    return times


def escalate(job: Job, now: float | None = None) -> dict[str, Any] | None:
    """Block `job.subject` if, checked now, it still earns it; the notice, or None.

    Re-checked when carried out, not when queued: an operator's unblock (which
    clears the hits) or reset since the hit, or a block already in place, means
    no block. Exactly one relay carries a block out (SET NX on the claim key).
    """
    store, esc = job.store, job.policy.limits.escalation
    if job.policy.milter.mode == "shadow":
        # Shadow mode never blocks automatically; the log says it would have.
        log.warning(
            "shadow mode: would block %s automatically (%d hits within %s)",
            job.subject, esc.hits, format_duration(esc.period),
        )  # fmt: skip
        return None
    wall = time.time() if now is None else now
    if current_hits(store, job.key, esc.period, job.clock) < esc.hits:
        return None
    if store.blocks_for([job.subject]):
        return None
    earlier = _earlier_blocks(store, job.key, esc.memory, wall)
    duration = block_duration(job.policy, len(earlier))
    with redis_errors("escalation claim"):
        claimed = store.client.set(
            claim_key(store, job.subject), job.key, nx=True, px=int(duration * 1000)
        )
        if not claimed:
            return None  # another relay, or an earlier job, carries this block out
        times = [*earlier, wall]
        pipe = store.client.pipeline(transaction=False)
        pipe.hset(job.key, mapping={"nbt": " ".join(f"{t:.0f}" for t in times), "nb": len(times)})
        pipe.expire(job.key, int(esc.memory) + 1)
        pipe.execute()
    reason = f"automatic: {esc.hits} rate-limit hits or bursts within {format_duration(esc.period)}"
    record = blocking.block(
        store,
        job.subject,
        actor=ACTOR,
        reason=reason,
        duration=duration,
        action=esc.action,
        via="milter",
        now=wall,
    )
    return {
        "event": "relaywarden.auto-block",
        "subject": str(job.subject),
        "action": record.action,
        "reason": reason,
        "since": record.since,
        "until": record.until,
        "duration": format_duration(duration),
        "automatic_blocks": len(times),
        "evidence": job.evidence,
        "unblock": f"relaywarden unblock {job.subject} --reason TEXT",
    }


def forget(store: RedisStore, subject: Subject) -> None:
    """On unblock: the hits that earned an automatic block go with it (else the next
    single deferral would re-block at once, and for longer)."""
    claim = claim_key(store, subject)
    with redis_errors("escalation reset"):
        key = store.client.get(claim)
        if key is None:
            return
        names: list[bytes] = store.client.hkeys(key)  # type: ignore[assignment]
        fields = [f for f in names if HIT_FIELD.match(f)]
        pipe = store.client.pipeline(transaction=False)
        if fields:
            pipe.hdel(key, *fields)
        pipe.delete(claim)
        pipe.execute()


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


def notice_sender(policy: Policy, configured: str | None = None) -> str:
    """The notice's sender: `configured` (default `[limits.escalation.email] sender`),
    else relaywarden@ the relay's own name: a sender the relay's own checks accept
    (a real domain, no customer's)."""
    if configured is None:
        configured = policy.limits.escalation.email.sender
    if configured:
        return configured
    host = policy.relay.hostnames[0] if policy.relay.hostnames else socket.gethostname()
    return f"relaywarden@{host}" if "." in host else "relaywarden@localhost.localdomain"


def stamp(mail: EmailMessage, sender: str, to: list[str], subject: str) -> EmailMessage:
    """From, To, Subject and the Date and Message-ID the header check asks of any message."""
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    # Callers build subjects from validated subjects and fixed words; CR/LF cannot get in.
    mail["Subject"] = subject.replace("\r", " ").replace("\n", " ")[:200]
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid("relaywarden", sender.rsplit("@", 1)[-1])
    return mail


def mail_through_relay(cfg: EmailSection, mail: EmailMessage, sleep: Any = time.sleep) -> bool:
    """Send through `cfg.relay`, retried with backoff like the webhook."""
    host, _, port = cfg.relay.rpartition(":")

    def send() -> bool:
        with smtplib.SMTP(host, int(port), timeout=cfg.timeout) as smtp:
            smtp.send_message(mail)
        return True

    return retrying("notice email", cfg.attempts, cfg.backoff, send, sleep)


def notice_email(cfg: EmailSection, notice: dict[str, Any], sender: str) -> EmailMessage:
    """The notice as mail to the abuse team."""
    subject = f"RelayWarden automatic block: {notice['subject']}"
    mail = stamp(EmailMessage(), sender, cfg.to, subject)
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
    return mail_through_relay(cfg, mail, sleep)


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
    """Two background threads per process, started on first use: one blocks, one
    sends notices. A webhook that hangs or an email being retried never delays
    the next block; a milter thread only enqueues."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=maxsize)
        self.notices: queue.Queue[tuple[Policy, dict[str, Any]]] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None  # blocks
        self._notice_thread: threading.Thread | None = None  # notices
        self._lock = threading.Lock()

    def _ensure(self, attr: str, name: str, target: Callable[[], None]) -> None:
        with self._lock:
            thread = getattr(self, attr)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=target, name=name, daemon=True)
                setattr(self, attr, thread)
                thread.start()

    def submit(self, job: Job) -> None:
        self._ensure("_thread", "relaywarden-escalation", self._work)
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
                    self._notify(job.policy, notice)
            except Exception:  # the thread must outlive any one job
                log.exception("escalation of %s failed", job.subject)
            finally:
                self.jobs.task_done()

    def _notify(self, policy: Policy, notice: dict[str, Any]) -> None:
        esc = policy.limits.escalation
        if not (esc.webhook.url or esc.email.to):
            return
        self._ensure("_notice_thread", "relaywarden-notices", self._send)
        try:
            self.notices.put_nowait((policy, notice))
        except queue.Full:
            log.error("notice queue full; dropped the notice for %s", notice["subject"])

    def _send(self) -> None:
        while True:
            policy, notice = self.notices.get()
            esc = policy.limits.escalation
            try:
                if esc.webhook.url and not post_webhook(esc.webhook, notice):
                    metrics.NOTICE_FAILURES.labels(channel="webhook").inc()
                sender = notice_sender(policy)
                if esc.email.to and not send_email(esc.email, notice, sender=sender):
                    metrics.NOTICE_FAILURES.labels(channel="email").inc()
            except Exception:  # the thread must outlive any one notice
                log.exception("notice for %s failed", notice["subject"])
            finally:
                self.notices.task_done()


ESCALATOR = Escalator()
metrics.ESCALATION_QUEUE.set_function(ESCALATOR.jobs.qsize)
