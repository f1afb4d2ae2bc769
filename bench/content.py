"""Cost per message of the content view and the campaign fingerprint, on a corpus
that includes large HTML mails: microseconds, bytes the view keeps, and the peak
of Python allocations while the view is built (tracemalloc, a separate pass).

    python -m bench.content [--rounds N]

The body is fed in 64 KB chunks, as libmilter hands it over. Every loop is
bounded in count and in time.
"""

from __future__ import annotations

import argparse
import base64
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from relaywarden.content.fingerprint import fingerprint
from relaywarden.content.stream import ContentStream
from relaywarden.content.view import ContentView
from relaywarden.message import HeaderField, message_from_bytes
from relaywarden.policy.content import CampaignsSection, ContentCaps

TESTS = Path(__file__).resolve().parents[1] / "tests"
TIME_CAP = 20.0  # seconds per message kind, whatever --rounds says
CAPS, CAMPAIGNS = ContentCaps(), CampaignsSection()
CHUNK = 65536


def html_newsletter(size: int) -> bytes:
    item = (
        "<tr><td class='item'><img src='https://cdn.shop.example/img/{n}.jpg'>"
        "<h2>Offer {n}: garden chairs, weatherproof</h2><p>Only this week: our teak garden"
        " chairs with cushions, free delivery.</p><a href='https://shop.example/p/{n}?"
        "utm_source=news&utm_medium=mail&uid=8812'>Buy now</a></td></tr>\r\n"
    )
    rows, n = [], 0
    while sum(len(r) for r in rows) < size:
        rows.append(item.format(n=n))
        n += 1
    doc = "<html><head><style>td{padding:4px}</style></head><body><table>" + "".join(rows)
    return (doc + "</table></body></html>").encode()


def mime(ctype: str, body: bytes, cte: str = "") -> tuple[list[HeaderField], bytes]:
    headers = [HeaderField("Content-Type", ctype.encode())]
    if cte:
        headers.append(HeaderField("Content-Transfer-Encoding", cte.encode()))
    return headers, body


def alternative(size: int) -> tuple[list[HeaderField], bytes]:
    html = base64.encodebytes(html_newsletter(size)).replace(b"\n", b"\r\n")
    pdf = base64.encodebytes(bytes(range(256)) * (2 * 1024 * 1024 // 256)).replace(b"\n", b"\r\n")
    body = (
        b"--A\r\nContent-Type: multipart/alternative; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"Offers of the week, see https://shop.example/week\r\n"
        * 200
        + b"--B\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + html + b"--B--\r\n"
        b'--A\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="c.pdf"'
        b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + pdf + b"--A--\r\n"
    )
    return mime("multipart/mixed; boundary=A", body)


def corpus() -> dict[str, list[tuple[list[HeaderField], bytes]]]:
    small = []
    for path in sorted([*TESTS.glob("eml/*.eml"), *TESTS.glob("corpus/*.eml")]):
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        msg = message_from_bytes(raw)
        small.append((msg.headers, raw.partition(b"\r\n\r\n")[2]))
    return {
        f"test corpus ({len(small)} .eml, small)": small,
        "HTML newsletter 100 KB": [mime("text/html; charset=utf-8", html_newsletter(100_000))],
        "HTML newsletter 1 MB": [mime("text/html; charset=utf-8", html_newsletter(1_000_000))],
        "HTML newsletter 5 MB": [mime("text/html; charset=utf-8", html_newsletter(5_000_000))],
        "multipart: text + 1 MB HTML (base64) + 2 MB PDF": [alternative(1_000_000)],
    }


def build(headers: list[HeaderField], body: bytes) -> ContentView:
    stream = ContentStream(headers, CAPS)
    for start in range(0, len(body), CHUNK):
        stream.feed(body[start : start + CHUNK])
    return stream.finish()


def timed(rounds: int, step: Callable[[], object]) -> float:
    """Microseconds per call, bounded by `rounds` and TIME_CAP."""
    done, started = 0, time.perf_counter()
    while done < rounds and time.perf_counter() - started < TIME_CAP:
        step()
        done += 1
    return (time.perf_counter() - started) / max(done, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    print(
        f"{'messages':50} {'body KB':>8} {'view us':>9} {'fp us':>8} {'kept KB':>8} {'peak KB':>8}"
    )
    for name, items in corpus().items():
        size = sum(len(b) for _, b in items) / len(items) / 1024
        views = [build(h, b) for h, b in items]
        view_us = timed(rounds, lambda items=items: [build(h, b) for h, b in items])
        fp_us = timed(
            rounds,
            lambda views=views: [fingerprint(v, ["a.b@example.org"], CAMPAIGNS) for v in views],
        )
        view_us, fp_us = view_us / len(items), fp_us / len(items)
        kept = max(v.kept_bytes for v in views) / 1024
        tracemalloc.start()
        peak = 0
        for h, b in items:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            build(h, b)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
        print(f"{name:50} {size:8.0f} {view_us:9.0f} {fp_us:8.0f} {kept:8.1f} {peak / 1024:8.0f}")


if __name__ == "__main__":
    main()
