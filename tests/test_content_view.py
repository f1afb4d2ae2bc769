"""The bounded content view: what the streaming MIME scanner keeps of real and
broken messages, that it is the same however the body is chunked, and that hostile
bodies cost bounded memory through the real adapter (peak RSS measured)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from relaywarden.content.stream import ContentStream, view_of
from relaywarden.content.view import ContentView
from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.redis import RedisServer
from relaywarden.message import message_from_bytes
from relaywarden.policy.content import ContentCaps

CAPS = ContentCaps()

HTML = (
    "<html><head><style>.x{color:red}</style><script>var a='hidden';</script></head>"
    "<body><p>Hallo J\xfcrgen,</p><a href='https://track.evil.example/x?u=1'>Gewinn</a>"
    "<img src='http://cdn.img.example/a.png'></body></html>"
)

MIXED = (
    b"From: a@shop.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"preamble --XX not a boundary\r\n"
    b"--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n"
    b"--YY\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Hello J=C3=BCrgen, claim at https://win.example.co.uk/c?id=3D123 now=\r\n!\r\n"
    b"--YY\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(HTML.encode("latin-1")).replace(b"\n", b"\r\n")
    + b"--YY--\r\n"
    b'--XX\r\nContent-Type: application/pdf; name="invoice.pdf"\r\n'
    b'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\nAAAA\r\n"
    b"--XX--\r\nepilogue\r\n"
)


def split(raw: bytes) -> tuple[list, bytes]:  # type: ignore[type-arg]
    msg = message_from_bytes(raw)
    return msg.headers, raw.partition(b"\r\n\r\n")[2]


def fed(raw: bytes, size: int, caps: ContentCaps = CAPS) -> ContentView:
    headers, body = split(raw)
    stream = ContentStream(headers, caps)
    for start in range(0, len(body), size):
        stream.feed(body[start : start + size])
    return stream.finish()


def test_multipart_text_html_urls_and_attachments() -> None:
    view = fed(MIXED, 65536)
    assert view.text.startswith("Hello Jürgen, claim at https://win.example.co.uk/c?id=123 now!")
    assert "Hallo Jürgen" in view.html_text and "Gewinn" in view.html_text
    assert "hidden" not in view.html_text and "color" not in view.html_text
    assert set(view.urls) == {
        "https://win.example.co.uk/c?id=123",
        "https://track.evil.example/x?u=1",
        "http://cdn.img.example/a.png",
    }
    assert view.url_domains == {"example.co.uk", "evil.example", "img.example"}
    assert [(a.name, a.content_type) for a in view.attachments] == [
        ("invoice.pdf", "application/pdf")
    ]
    assert view.parts == 5 and view.problems == ()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 76, 1000])
def test_any_chunking_gives_the_same_view(size: int) -> None:
    assert fed(MIXED, size) == fed(MIXED, 65536)


LONG_HEADER_PART = b"--B\r\nContent-Type: text/plain\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\nx\r\n"


def mime(ctype: str, body: bytes, cte: str = "") -> bytes:
    head = f"From: a@shop.example\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\n"
    if cte:
        head += f"Content-Transfer-Encoding: {cte}\r\n"
    return head.encode() + b"\r\n" + body


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (mime("multipart/mixed; boundary=Q", b"--Q\r\nContent-Type: text/plain\r\n\r\nx\r\n"),
         "unterminated-multipart"),
        (mime("multipart/mixed", b"--Q\r\n\r\nx\r\n--Q--\r\n"), "missing-boundary"),
        (mime("text/plain", b"aGVsbG8gd29ybGQ=!!\r\nQQ", "base64"), "bad-transfer-encoding"),
        (mime("text/plain; charset=x-no-such-charset", b"hello"), "unknown-charset"),
        (mime("text/plain; charset=rot13", b"hello"), "unknown-charset"),
        (mime("text/plain; charset=utf-8", b"caf\xe9 cr\xe8me"), "charset-mismatch"),
        (mime("multipart/mixed; boundary=B", LONG_HEADER_PART), "part-header-too-long"),
    ],
)  # fmt: skip
def test_malformed_content_is_a_problem_not_an_exception(raw: bytes, problem: str) -> None:
    assert problem in fed(raw, 5).problems


def test_text_is_capped_and_keeps_what_the_cap_allows() -> None:
    caps = ContentCaps(max_text_bytes=4096)
    view = fed(mime("text/plain", b"word " * 100_000), 8192, caps)
    assert len(view.text) == 4096 and view.text.startswith("word word")
    assert view.kept_bytes <= 4096 + 100


def test_scan_stops_at_its_cap_and_says_so() -> None:
    caps = ContentCaps(max_scan_bytes=64 * 1024)
    view = fed(mime("text/plain", b"x" * 200_000), 8192, caps)
    assert view.scanned == 64 * 1024 and "scan-truncated" in view.problems


def test_many_parts_and_deep_nesting_are_bounded() -> None:
    body = b"".join(
        b"--B\r\nContent-Type: image/png\r\nContent-Disposition: attachment;"
        b' filename="p%d.png"\r\n\r\nAAAA\r\n' % n
        for n in range(10_000)
    )
    view = fed(mime("multipart/mixed; boundary=B", body + b"--B--\r\n"), 65536)
    assert "too-many-parts" in view.problems
    # The top-level multipart and its 10,000 parts, all counted; 50 described.
    assert view.parts == 10_001 and len(view.attachments) == CAPS.max_attachments
    nested = b"".join(
        b"--L%d\r\nContent-Type: multipart/mixed; boundary=L%d\r\n\r\n" % (n, n + 1)
        for n in range(500)
    )
    assert "nesting-too-deep" in fed(mime("multipart/mixed; boundary=L0", nested), 4096).problems


def test_urls_are_bounded_and_odd_hosts_do_not_raise() -> None:
    text = b" ".join(b"http://h%d.spam.example/x" % n for n in range(1000))
    text += b" http://[::1 http://a..b/ http://x:99999/ www.shop.example/a"
    view = fed(mime("text/plain", text), 4096)
    assert len(view.urls) == CAPS.max_urls
    assert view.url_domains == {"spam.example"}


def test_non_mime_message_is_one_text_part() -> None:
    view = view_of([], b"Plain old mail, see www.shop.example/offers today\r\n", CAPS)
    assert view.text.startswith("Plain old mail") and view.url_domains == {"shop.example"}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    server = RedisServer()
    url = server.start(tmp_path_factory.mktemp("redis"))
    yield url  # type: ignore[misc]
    server.stop()


@pytest.mark.parametrize(
    ("kind", "finding"),
    [
        ("50mb-html", "scan-truncated"),
        ("10000-parts", "too-many-parts"),
        ("deep", "nesting-too-deep"),
    ],
)
def test_hostile_bodies_through_the_adapter_cost_bounded_memory(
    redis_url: str, tmp_path: Path, kind: str, finding: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[checks.sender]\nenabled = false\n[limits.inventory]\nrefresh = "1h"\n')
    done = subprocess.run(
        [sys.executable, "-m", "tests.content_fault", redis_url, str(policy), kind],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # A decision like any other message's, with the finding, and no exception.
    assert result["action"] == "accept" and finding in result["findings"]
    # The whole body passed (50 MB counted), yet the peak RSS grew by little:
    # the caps (16 MB scanned, 768 KB of raw text, 256 KB of text) bound it.
    assert result["rss_growth_kb"] < 32 * 1024, result
    if kind == "50mb-html":
        assert result["body_size"] > 50 * 1024 * 1024
