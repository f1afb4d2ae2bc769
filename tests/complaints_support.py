"""Building complaint reports the way mailbox providers send them (RFC 5965)."""

from __future__ import annotations

from email.message import EmailMessage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.policy import compat32


def arf(original: bytes, feedback_type: str = "abuse", source_ip: str = "192.0.2.10") -> bytes:
    """A multipart/report; report-type=feedback-report around `original`."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "<fbl@mailbox.example>"
    report["To"] = "<fbl@relay.example.net>"
    report["Subject"] = "FW: complaint about message"
    report.attach(MIMEText("This is an email abuse report for an email message received.\n"))
    fields = MIMEText(
        f"Feedback-Type: {feedback_type}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
        f"Source-IP: {source_ip}\nArrival-Date: Sun, 29 Nov 2026 13:40:00 +0000\n",
        "feedback-report",
    )
    fields.replace_header("Content-Type", "message/feedback-report")
    report.attach(fields)
    original_msg = BytesParser(policy=compat32).parsebytes(original)
    report.attach(MIMEMessage(original_msg))
    return report.as_bytes()


def forward(original: bytes) -> bytes:
    """A person forwarding the spam to abuse@ by quoting it inline."""
    msg = EmailMessage()
    msg["From"] = "someone@example.org"
    msg["To"] = "abuse@relay.example.net"
    msg["Subject"] = "Fwd: spam from your network"
    quoted = "\n".join("> " + line for line in original.decode("utf-8", "replace").splitlines())
    msg.set_content("Please stop this.\n\n-------- Forwarded --------\n" + quoted + "\n")
    return msg.as_bytes()
