"""A small SMTP client for tests: XCLIENT, SMTPUTF8, per-stage results, no exceptions on rejects.

smtplib's high-level helpers raise on rejections and rewrite addresses
(quoteaddr). Tests need the exact reply at the exact stage, and exact
envelope strings, so this module drives smtplib at the command level.
"""

from __future__ import annotations

import base64
import re
import smtplib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

Stage = Literal["connect", "xclient", "auth", "mail", "rcpt", "data", "ok"]

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


@dataclass
class SendResult:
    """What happened to one message: where it stopped and the server's words."""

    stage: Stage
    code: int
    text: str
    enhanced: str | None = None
    per_rcpt: dict[str, tuple[int, str]] = field(default_factory=dict)
    queue_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.stage == "ok"


def xtext(value: str) -> str:
    """xtext-encode an XCLIENT attribute value (RFC 3461 section 4, XCLIENT_README).

    Bytes outside '!'..'~', and '+' and '=', become '+HH'.
    """
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xclient_addr(addr: str) -> str:
    """Postfix wants IPv6 client addresses as 'IPV6:2001:db8::1'."""
    if ":" in addr and not addr.upper().startswith("IPV6:"):
        return "IPV6:" + addr
    return addr


def _split_reply(code: int, raw: bytes) -> tuple[int, str, str | None]:
    text = raw.decode("utf-8", errors="replace")
    match = _ENHANCED.match(text)
    return code, text, match.group(0) if match else None


def _is_ascii(*values: str) -> bool:
    return all(v.isascii() for v in values)


def _dot_stuff(data: bytes) -> bytes:
    """CRLF line endings, leading dots doubled, terminated by CRLF . CRLF."""
    lines = re.split(rb"\r?\n", data)
    if lines and lines[-1] == b"":
        lines.pop()  # data ended with a newline; don't add an empty line
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(stuffed) + b"\r\n.\r\n"


class Session:
    """One SMTP connection that can carry several messages (Postfix reuses smtpd per session)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        xclient: Mapping[str, str] | None = None,
        helo: str = "vps.example",
        timeout: float = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.helo = helo
        self.timeout = timeout
        self._initial_xclient = xclient
        self.smtp: smtplib.SMTP | None = None
        # Set when the server rejected the connection setup; every send returns it.
        self.failure: SendResult | None = None

    # -- connection setup -------------------------------------------------

    def open(self) -> Self:
        """Connect, EHLO and (optionally) XCLIENT. Network errors raise; SMTP replies don't."""
        smtp = smtplib.SMTP(timeout=self.timeout)
        self.smtp = smtp
        try:
            code, banner = smtp.connect(self.host, self.port)
            if code != 220:
                self.failure = self._result("connect", code, banner)
                return self
            if not self._ehlo():
                return self
            if self._initial_xclient:
                self.xclient(self._initial_xclient)
        except smtplib.SMTPServerDisconnected as exc:
            self.failure = SendResult("connect", 0, f"server disconnected: {exc}")
        return self

    def _ehlo(self) -> bool:
        assert self.smtp is not None
        code, text = self.smtp.ehlo(self.helo)
        if code != 250:
            self.failure = self._result("connect", code, text)
            return False
        return True

    def xclient(self, attrs: Mapping[str, str]) -> SendResult | None:
        """Send XCLIENT (between transactions) then EHLO again; None on success.

        Keys are XCLIENT attribute names (ADDR, NAME, HELO, LOGIN, PROTO, PORT...).
        Postfix checks smtpd_authorized_xclient_hosts against the *presented*
        address, so after XCLIENT ADDR=203.0.113.7 a second XCLIENT is refused
        (550 5.7.0): use one Session per simulated client.
        """
        assert self.smtp is not None
        parts = []
        for key, value in attrs.items():
            if key.upper() == "ADDR":
                value = xclient_addr(value)
            parts.append(f"{key.upper()}={xtext(value)}")
        code, text = self.smtp.docmd("XCLIENT", " ".join(parts))
        # Postfix answers a successful XCLIENT with a fresh 220 greeting.
        if code != 220:
            self.failure = self._result("xclient", code, text)
            return self.failure
        # XCLIENT resets the session: EHLO again (XCLIENT may have set HELO, but
        # a client must still say EHLO to get the ESMTP features).
        if not self._ehlo():
            return self.failure
        return None

    def auth(self, user: str, password: str, mech: str = "PLAIN") -> SendResult:
        """Real SMTP AUTH (PLAIN or LOGIN, RFC 4616 / draft-murchison-sasl-login).

        Returns the server's reply (235 on success, 535 on a wrong password);
        a refusal is not sticky: the session may try again or send anyway.
        """
        assert self.smtp is not None
        if mech == "PLAIN":
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            code, text = self.smtp.docmd("AUTH", f"PLAIN {token}")
        elif mech == "LOGIN":
            code, text = self.smtp.docmd(
                "AUTH", "LOGIN " + base64.b64encode(user.encode()).decode()
            )
            if code == 334:
                code, text = self.smtp.docmd(base64.b64encode(password.encode()).decode())
        else:
            raise ValueError(f"unsupported SASL mechanism {mech!r}")
        return self._result("ok" if code == 235 else "auth", code, text)

    # -- one message ------------------------------------------------------

    def send(
        self,
        mail_from: str,
        rcpts: Iterable[str],
        data: bytes,
    ) -> SendResult:
        """Send one message; always returns a SendResult (never raises on SMTP rejects)."""
        if self.smtp is None:
            self.open()
        if self.failure is not None:
            return self.failure
        rcpt_list = list(rcpts)
        try:
            result = self._transaction(mail_from, rcpt_list, data)
        except smtplib.SMTPServerDisconnected as exc:
            result = SendResult("connect", 0, f"server disconnected: {exc}")
            self.failure = result
        if not result.accepted and self.failure is None:
            self._rset()
        return result

    def _transaction(self, mail_from: str, rcpts: list[str], data: bytes) -> SendResult:
        smtp = self.smtp
        assert smtp is not None
        options = self._mail_options(mail_from, rcpts, data)
        # Non-ASCII addresses need UTF-8 on the wire; smtplib defaults to ASCII.
        smtp.command_encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        code, text = smtp.docmd("MAIL", f"FROM:<{mail_from}>" + "".join(" " + o for o in options))
        if code != 250:
            return self._result("mail", code, text)
        per_rcpt = self._rcpts(rcpts)
        if not any(c in (250, 251) for c, _ in per_rcpt.values()):
            # Every recipient was refused: report the last refusal.
            code, last = per_rcpt[rcpts[-1]] if rcpts else (0, "no recipients")
            return self._result("rcpt", code, last.encode(), per_rcpt)
        code, text = smtp.docmd("DATA")
        if code != 354:
            return self._result("data", code, text, per_rcpt)
        smtp.send(_dot_stuff(data))
        code, text = smtp.getreply()
        result = self._result("ok" if code == 250 else "data", code, text, per_rcpt)
        if code == 250 and (match := _QUEUED_AS.search(result.text)):
            result.queue_id = match.group(1)
        return result

    def _mail_options(self, mail_from: str, rcpts: list[str], data: bytes) -> list[str]:
        options = []
        if not _is_ascii(mail_from, *rcpts):
            options.append("SMTPUTF8")
        if not data.isascii():
            options.append("BODY=8BITMIME")
        return options

    def _rcpts(self, rcpts: list[str]) -> dict[str, tuple[int, str]]:
        assert self.smtp is not None
        per_rcpt: dict[str, tuple[int, str]] = {}
        for rcpt in rcpts:
            code, text = self.smtp.docmd("RCPT", f"TO:<{rcpt}>")
            per_rcpt[rcpt] = (code, text.decode("utf-8", errors="replace"))
        return per_rcpt

    def _rset(self) -> None:
        """Abort a failed transaction so the next MAIL FROM is allowed."""
        try:
            assert self.smtp is not None
            self.smtp.docmd("RSET")
        except smtplib.SMTPException:
            pass

    @staticmethod
    def _result(
        stage: Stage, code: int, raw: bytes, per_rcpt: dict[str, tuple[int, str]] | None = None
    ) -> SendResult:
        code, text, enhanced = _split_reply(code, raw)
        return SendResult(stage, code, text, enhanced, dict(per_rcpt or {}))

    # -- teardown ---------------------------------------------------------

    def close(self) -> None:
        if self.smtp is None:
            return
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()
        self.smtp = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def send(
    host: str,
    port: int,
    mail_from: str,
    rcpts: Iterable[str],
    data: bytes,
    *,
    xclient: Mapping[str, str] | None = None,
    helo: str = "vps.example",
    timeout: float = 30,
) -> SendResult:
    """Send one message over a fresh connection. See Session.send."""
    with Session(host, port, xclient=xclient, helo=helo, timeout=timeout) as session:
        return session.send(mail_from, rcpts, data)
