"""An SMTP sink standing in for "the internet": it accepts and records everything,
except recipients a test told it to refuse (550 5.1.1) or defer (451)."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from relaywarden.devstack.procs import LOOPBACK, StopsOnExit, free_port

# Tests send 30 MB messages; leave room for base64 growth and Postfix headers.
DEFAULT_DATA_SIZE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class SinkMessage:
    """One delivered message, as the sink saw it on the wire."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    subject: str | None
    arrived: float = field(default_factory=time.time)
    smtputf8: bool = False

    def header(self, name: str) -> str | None:
        """First value of header `name` (parsed leniently, 8-bit safe)."""
        value = _parse_headers(self.raw).get(name)
        return None if value is None else str(value)

    def headers(self, name: str) -> list[str]:
        """All values of header `name`, in order (e.g. every Received line)."""
        return [str(v) for v in _parse_headers(self.raw).get_all(name, [])]


def _parse_headers(raw: bytes) -> email.message.Message:
    # headersonly: a 30 MB body need not be parsed to read the Subject.
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    return parser.parsebytes(raw, headersonly=True)


USER_UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
TRY_LATER = "451 4.2.0 <{rcpt}>: Recipient address temporarily unavailable, try again later"


class _Recorder:
    """aiosmtpd handler: stores each message and wakes up waiters."""

    def __init__(self) -> None:
        self.messages: list[SinkMessage] = []
        self.cond = threading.Condition()
        # Lower-cased recipient address or "@domain" -> the reply it gets at RCPT TO.
        self.replies: dict[str, str] = {}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        rcpt = address.lower()
        with self.cond:
            reply = self.replies.get(rcpt) or self.replies.get("@" + rcpt.rpartition("@")[2])
        if reply is not None:
            return reply.format(rcpt=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        subject = _parse_headers(raw).get("Subject")
        msg = SinkMessage(
            # aiosmtpd strips the brackets except for the null sender ("<>").
            mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            subject=None if subject is None else str(subject),
            smtputf8=envelope.smtp_utf8,
        )
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()
        return "250 2.0.0 Ok: delivered to sink"


class Sink(StopsOnExit):
    """aiosmtpd on a free 127.0.0.1 port that records every delivered message.

    decode_data=False keeps the exact bytes (8-bit and SMTPUTF8 mail must
    survive unchanged so tests can compare them).
    """

    def __init__(
        self,
        data_size_limit: int = DEFAULT_DATA_SIZE_LIMIT,
        hostname: str = "sink.test",
    ) -> None:
        self.data_size_limit = data_size_limit
        self.hostname = hostname
        self.port = 0
        self._recorder = _Recorder()
        self._controller: Controller | None = None

    def start(self) -> int:
        """Start listening; returns the port."""
        if self._controller is not None:
            raise RuntimeError("Sink already started")
        self.port = free_port()
        controller = Controller(
            self._recorder,
            hostname=LOOPBACK,
            port=self.port,
            server_hostname=self.hostname,
            data_size_limit=self.data_size_limit,
            decode_data=False,
            enable_SMTPUTF8=True,
            ready_timeout=10.0,
        )
        controller.start()  # blocks until the server thread accepts connections
        self._controller = controller
        return self.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[SinkMessage]:
        """A snapshot copy of everything delivered so far."""
        with self._recorder.cond:
            return list(self._recorder.messages)

    def refuse(self, *addresses: str, reply: str = USER_UNKNOWN) -> None:
        """Answer RCPT TO for these addresses (or "@domain") with `reply`.

        `reply` may name the recipient as `{rcpt}`; the default is Postfix's own
        wording for a recipient that does not exist. Use TRY_LATER to defer.
        """
        with self._recorder.cond:
            for address in addresses:
                self._recorder.replies[address.lower()] = reply

    def defer(self, *addresses: str) -> None:
        self.refuse(*addresses, reply=TRY_LATER)

    def clear(self) -> None:
        with self._recorder.cond:
            self._recorder.messages.clear()

    def wait_for(
        self,
        what: int | Callable[[SinkMessage], bool] = 1,
        timeout: float = 30.0,
    ) -> list[SinkMessage]:
        """Wait until `what` messages arrived (int) or one matches `what` (predicate).

        Returns all messages (count) or the matching ones (predicate).
        Raises TimeoutError with what did arrive, to make failures readable.
        """

        def current() -> list[SinkMessage] | None:
            msgs = self._recorder.messages
            if isinstance(what, int):
                return list(msgs) if len(msgs) >= what else None
            matching = [m for m in msgs if what(m)]
            return matching or None

        deadline = time.monotonic() + timeout
        with self._recorder.cond:
            while (found := current()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.mail_from, m.rcpt_tos, m.subject) for m in self._recorder.messages]
                    raise TimeoutError(
                        f"sink: timed out after {timeout:.1f}s waiting for {what!r}; got {seen}"
                    )
                self._recorder.cond.wait(left)
            return found

    def __enter__(self) -> Self:
        self.start()
        return self


__all__ = ["TRY_LATER", "USER_UNKNOWN", "Sink", "SinkMessage"]
