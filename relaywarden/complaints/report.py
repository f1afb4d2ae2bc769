"""Reading a complaint: an RFC 5965 feedback report or a forwarded message.

Pure and bounded: bytes in, a `Report` out, never an exception. The trace
token is looked for in the embedded original (the report's message/rfc822 or
text/rfc822-headers part, or any attached message), then anywhere in the body
of a plain forward (an inline-quoted copy), never in the report's own headers.
Every value kept is decoded, stripped of control characters and cut short: it
is shown on the desk (autoescaped) and in logs.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from typing import Any

MAX_VALUE = 300
MAX_PARTS = 50  # a report with more MIME parts than this is not read further
# Token alphabet of relaywarden/trace (URL-safe base64), bounded length.
_TOKEN_CHARS = r"[A-Za-z0-9_-]{20,300}"
ORIGINAL_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")
FEEDBACK_FIELDS = (
    "Feedback-Type",
    "User-Agent",
    "Version",
    "Original-Mail-From",
    "Original-Rcpt-To",
    "Arrival-Date",
    "Source-IP",
    "Reported-Domain",
    "Reporting-MTA",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    text = str(value) if value is not None else ""
    return _CONTROL.sub(" ", text).strip()[:MAX_VALUE]


@dataclass
class Report:
    kind: str  # "arf" or "forward"
    tokens: list[str] = field(default_factory=list)  # candidates, most likely first
    feedback: dict[str, str] = field(default_factory=dict)
    original: dict[str, str] = field(default_factory=dict)
    subject: str = ""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "feedback": self.feedback,
            "original": self.original,
            "subject": self.subject,
            "problems": self.problems,
        }


def _header_tokens(msg: EmailMessage, header: str) -> list[str]:
    pattern = re.compile(_TOKEN_CHARS)
    out = []
    for value in msg.get_all(header, []) or []:
        m = pattern.search(str(value))
        if m:
            out.append(m.group(0))
    return out


def _parse_bytes(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _originals(msg: EmailMessage) -> list[EmailMessage]:
    """Embedded originals: message/rfc822 parts and text/rfc822-headers parts."""
    found: list[EmailMessage] = []
    for n, part in enumerate(msg.walk()):
        if n > MAX_PARTS:
            break
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
                found.append(payload[0])
        elif ctype in ("text/rfc822-headers", "text/rfc822"):
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                found.append(_parse_bytes(body))
    return found


def _feedback(msg: EmailMessage) -> dict[str, str]:
    for n, part in enumerate(msg.walk()):
        if n > MAX_PARTS:
            break
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        # compat32 parses the fields as one or more header blocks.
        blocks = payload if isinstance(payload, list) else []
        fields: dict[str, str] = {}
        for block in blocks:
            if isinstance(block, EmailMessage):
                for name in FEEDBACK_FIELDS:
                    if block.get(name) is not None and name not in fields:
                        fields[name] = clean(block.get(name))
        if not fields and isinstance(payload, str):
            parsed = email.message_from_string(payload, policy=email.policy.compat32)
            fields = {k: clean(parsed[k]) for k in FEEDBACK_FIELDS if parsed[k] is not None}
        return fields
    return {}


def _body_tokens(msg: EmailMessage, header: str) -> list[str]:
    """A plain forward quoting the original inline: "X-RelayWarden-Trace: TOKEN" in a body."""
    pattern = re.compile(
        rf"^[> \t]*{re.escape(header)}:[ \t]*(?:\r?\n[ \t]+)?({_TOKEN_CHARS})",
        re.IGNORECASE | re.MULTILINE,
    )
    out = []
    for n, part in enumerate(msg.walk()):
        if n > MAX_PARTS or part.is_multipart():
            continue
        body = part.get_payload(decode=True)
        if isinstance(body, bytes):
            out += pattern.findall(body.decode("utf-8", "replace"))
    return out


def read(raw: bytes, header: str) -> Report:
    """What a complaint says; problems are noted, never raised."""
    try:
        msg = _parse_bytes(raw)
    except Exception as exc:  # the email package's parser is lenient; belt and braces
        return Report(kind="forward", problems=[f"unparsable: {type(exc).__name__}"])
    is_arf = msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "feedback-report"
    )
    report = Report(kind="arf" if is_arf else "forward", subject=clean(msg.get("Subject")))
    try:
        originals = _originals(msg)
        for original in originals:
            report.tokens += _header_tokens(original, header)
        if originals:
            first = originals[0]
            report.original = {
                name: clean(first.get(name)) for name in ORIGINAL_HEADERS if first.get(name)
            }
        if is_arf:
            report.feedback = _feedback(msg)
            if not report.feedback:
                report.problems.append("no message/feedback-report part")
        if not report.tokens:
            report.tokens = _body_tokens(msg, header)
    except Exception as exc:  # a hostile MIME structure: keep what was read
        report.problems.append(f"malformed: {type(exc).__name__}")
    if is_arf and not originals:
        report.problems.append("no original message in the report")
    report.tokens = list(dict.fromkeys(report.tokens))[:5]
    return report
