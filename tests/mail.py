"""Building test messages as bytes, including deliberately broken ones."""

from __future__ import annotations

from email.utils import formatdate, make_msgid


def message(
    mail_from: str = "orders@shop.example",
    subject: str = "Your order has shipped",
    *,
    to: str = "buyer@example.org",
    extra_headers: list[bytes] | None = None,
    body: bytes = b"Hello,\r\nyour order left our warehouse.\r\n",
    from_header: bytes | None = None,
) -> bytes:
    domain = mail_from.rsplit("@", 1)[-1] if "@" in mail_from else "shop.example"
    head = [
        from_header if from_header is not None else f"From: <{mail_from}>".encode(),
        f"To: <{to}>".encode(),
        f"Subject: {subject}".encode(),
        f"Date: {formatdate()}".encode(),
        f"Message-ID: {make_msgid(domain=domain)}".encode(),
        *(extra_headers or []),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body
