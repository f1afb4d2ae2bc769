"""Run by test_content_view in a fresh interpreter: drive the real adapter (pymilter's
TestCtx, a real redis-server) with one hostile body generated on the fly, and print
the verdict, the findings and how much the process's peak RSS grew.

    python -m tests.content_fault REDIS_URL POLICY KIND
"""

from __future__ import annotations

import io
import json
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import Milter
from Milter.testctx import TestCtx

from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.runtime import Overrides, Runtime

NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


def big_html(size: int) -> Iterator[bytes]:
    """A single 8bit HTML part of `size` bytes: one long document."""
    row = b"<tr><td>Win a prize at <a href='https://prize.example/c?x=1'>here</a></td></tr>\r\n"
    yield b"<html><body><table>\r\n"
    sent = 0
    while sent < size:
        yield row * 100
        sent += len(row) * 100
    yield b"</table></body></html>\r\n"


def many_parts(count: int) -> Iterator[bytes]:
    for n in range(count):
        yield (
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="f%d.bin"\r\n\r\nAAAA\r\n' % n
        )
    yield b"--B--\r\n"


def deep(levels: int) -> Iterator[bytes]:
    for n in range(levels):
        yield b"--L%d\r\nContent-Type: multipart/mixed; boundary=L%d\r\n\r\n" % (n, n + 1)
    yield b"--L%d\r\nContent-Type: text/plain\r\n\r\nhello\r\n" % levels


BODIES = {
    "50mb-html": ("text/html; charset=utf-8", lambda: big_html(50 * 1024 * 1024)),
    "10000-parts": ("multipart/mixed; boundary=B", lambda: many_parts(10_000)),
    "deep": ("multipart/mixed; boundary=L0", lambda: deep(2000)),
}


class Stream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while len(self.pending) < size:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.pending += chunk
        out, self.pending = self.pending[:size], self.pending[size:]
        return out


def main() -> None:
    url, policy, kind = sys.argv[1:4]
    TestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    rt = Runtime.start(Path(policy), Overrides(redis_url=url))
    RelayWardenMilter.runtime = rt
    Milter.factory = RelayWardenMilter
    ctype, body = BODIES[kind]
    ctx = TestCtx()
    ctx._setsymval("i", "4FAULTQUEUE")
    ctx._connect(host="vps.example", helo="vps.example", ip="203.0.113.7")
    ctx._envfrom("<orders@shop.example>")
    ctx._envrcpt("<buyer@example.org>")
    ctx._data()
    for name, value in [
        ("From", b"<orders@shop.example>"),
        ("To", b"<buyer@example.org>"),
        ("Subject", b"fault"),
        ("Date", b"Sat, 28 Nov 2026 09:12:00 +0000"),
        ("Message-ID", b"<fault@shop.example>"),
        ("MIME-Version", b"1.0"),
        ("Content-Type", ctype.encode()),
    ]:
        ctx._priv.header_bytes(name, value)
    ctx._eoh()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ctx._feed_body(Stream(body()))
    rc = ctx._eom()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    event = rt.store.recent_events(1)[0]
    print(
        json.dumps(
            {
                "rc": int(rc),
                "action": event["action"],
                "findings": [f["name"] for f in event.get("findings", [])],
                "rss_growth_kb": after - before,
                "body_size": ctx._priv.digest.size,
            }
        )
    )


if __name__ == "__main__":
    main()
