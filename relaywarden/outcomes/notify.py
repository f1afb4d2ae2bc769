"""Notices to the abuse team (webhook and/or email) from a background thread.

Outcome warnings (from the watcher) and automatic login blocks (from the milter)
send typed JSON notices; the milter only enqueues, so a slow webhook never
delays mail. Sending reuses escalation's retrying webhook POST.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from relaywarden.limits.escalation import mail_through_relay, post_webhook, stamp
from relaywarden.policy.limits import EmailSection, WebhookSection

log = logging.getLogger("relaywarden.notices")


def send_email(
    cfg: EmailSection,
    title: str,
    notice: dict[str, Any],
    sender: str,
    sleep: Any = time.sleep,
) -> bool:
    """The typed notice to the abuse team (`cfg.to`) through the relay."""
    mail = stamp(EmailMessage(), sender, cfg.to, title)
    mail.set_content(
        f"{notice.get('explain', '')}\n\nThe notice:\n" + json.dumps(notice, indent=2, default=str)
    )
    return mail_through_relay(cfg, mail, sleep)


def tell_customer(
    cfg: EmailSection, to: list[str], title: str, text: str, sender: str, sleep: Any = time.sleep
) -> bool:
    """A plain-language notice to the customer's own contact addresses: what
    happened and what to do, without the abuse team's internal evidence."""
    mail = stamp(EmailMessage(), sender, to, title)
    mail.set_content(text)
    return mail_through_relay(cfg, mail, sleep)


def deliver(
    webhook: WebhookSection,
    email: EmailSection,
    title: str,
    notice: dict[str, Any],
    sender: str,
) -> None:
    log.warning("%s: %s", title, json.dumps(notice, default=str))
    if webhook.url:
        post_webhook(webhook, notice)
    if email.to:
        send_email(email, title, notice, sender)


class Notifier:
    """One background thread per process running queued jobs (bounded queue)."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="notices", daemon=True)
                self._thread.start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            log.error("notice queue full; dropped a notice")

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job()
            except Exception:  # the thread must outlive any one job
                log.exception("notice job failed")
            finally:
                self.jobs.task_done()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until queued notices are out: `relaywarden watch --once`."""
        deadline = time.monotonic() + timeout
        while self.jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


NOTIFIER = Notifier()
