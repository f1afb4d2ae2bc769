"""The SMTP listener the abuse@ / FBL address points at (aiosmtpd).

Bounded: reports above `[complaints] max_size` are refused at DATA (aiosmtpd's
data_size_limit, 552), each client address gets `per_client_per_minute`
messages a minute (then 451 4.7.1, so the sender retries later), and a report
that cannot be read is still accepted and kept as unattributed: a malformed
report never takes the listener down. Only a Redis failure answers 451 (the
sender retries; nothing is lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from relaywarden.complaints.service import take
from relaywarden.errors import StoreError
from relaywarden.policy import Policy
from relaywarden.store import RedisStore

log = logging.getLogger("relaywarden.complaints")


class RateLimit:
    """A sliding minute per client address (in memory: one listener process)."""

    def __init__(self, per_minute: int, clock: object = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, peer: str) -> bool:
        now = float(self.clock())  # type: ignore[operator]
        with self.lock:
            if len(self.seen) > 10_000:  # forget idle clients; bounded memory
                self.seen = {k: v for k, v in self.seen.items() if v and v[-1] > now - 60}
            times = self.seen.setdefault(peer, deque())
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


class Handler:
    def __init__(self, store: RedisStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.rate = RateLimit(policy.complaints.per_client_per_minute)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        if not self.rate.allow(peer):
            return "451 4.7.1 Too many reports from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        raw = envelope.original_content or b""
        try:
            entry = take(self.store, self.policy, raw, peer)
        except StoreError as exc:
            log.warning("complaint from %s not recorded: %s", peer, exc)
            return "451 4.3.0 Temporary problem recording the report, try again later"
        except Exception:  # never let one report take the listener down
            log.exception("complaint from %s could not be read", peer)
            return "250 2.0.0 Report received"
        log.info(
            "complaint from %s: %s%s",
            peer,
            ", ".join(entry["subjects"]) or "unattributed",
            f" ({'; '.join(entry['problems'])})" if entry["problems"] else "",
        )
        return "250 2.0.0 Report received"


def start(store: RedisStore, policy: Policy) -> Controller:
    host, _, port = policy.complaints.listen.rpartition(":")
    controller = Controller(
        Handler(store, policy),
        hostname=host.strip("[]"),
        port=int(port),
        data_size_limit=policy.complaints.max_size,
        decode_data=False,
        ready_timeout=10.0,
    )
    controller.start()
    return controller
