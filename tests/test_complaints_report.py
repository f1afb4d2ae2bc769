"""Reading complaints: ARF reports, inline forwards, hostile input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relaywarden.complaints.listener import RateLimit
from relaywarden.complaints.report import read
from tests.complaints_support import arf, forward

HEADER = "X-RelayWarden-Trace"
TOKEN = "AQJrMgBqDCF2BnJlbGF5MTRGaDlhUTJ6WWt4MQxyzXYZ0123456789_-ab"
ORIGINAL = (
    b"Received: from vps (unknown [203.0.113.7]) by relay.test\r\n"
    b"From: Shop <orders@shop.example>\r\nTo: <buyer@example.org>\r\n"
    b"Subject: Cheap watches\r\nMessage-ID: <1@shop.example>\r\n"
    + f"{HEADER}: {TOKEN}\r\n\r\nBuy now.\r\n".encode()
)


def test_arf_report() -> None:
    report = read(arf(ORIGINAL), HEADER)
    assert report.kind == "arf"
    assert report.tokens == [TOKEN]
    assert report.feedback["Feedback-Type"] == "abuse"
    assert report.feedback["Source-IP"] == "192.0.2.10"
    assert report.original["Subject"] == "Cheap watches"
    assert report.problems == []


def test_inline_forward() -> None:
    report = read(forward(ORIGINAL), HEADER)
    assert report.kind == "forward" and report.tokens == [TOKEN]


def test_the_reports_own_header_is_not_the_original() -> None:
    # A token in the report's own headers names whatever relayed the report.
    raw = f"{HEADER}: {TOKEN}\r\nSubject: hi\r\n\r\nno original here\r\n".encode()
    assert read(raw, HEADER).tokens == []


def test_arf_without_original_is_noted() -> None:
    raw = arf(ORIGINAL).replace(b"message/rfc822", b"application/x-gone")
    report = read(raw, HEADER)
    assert report.kind == "arf" and "no original message in the report" in report.problems


def test_control_characters_and_length_are_cut() -> None:
    evil = ORIGINAL.replace(b"Cheap watches", b"A\x1b[31m" + b"x" * 5000)
    subject = read(arf(evil), HEADER).original["Subject"]
    assert "\x1b" not in subject and len(subject) <= 300


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_without_exception(raw: bytes) -> None:
    read(raw, HEADER)
    read(
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n" + raw,
        HEADER,
    )


def test_rate_limit_per_client() -> None:
    now = [1000.0]
    limit = RateLimit(3, clock=lambda: now[0])
    assert [limit.allow("192.0.2.1") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("192.0.2.2")
    now[0] += 61
    assert limit.allow("192.0.2.1")


def test_maildir_pass(redis_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from relaywarden.complaints.maildir import read_maildir
    from relaywarden.complaints.service import recent
    from relaywarden.policy.schema import Policy

    box = tmp_path / "abuse"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.arf").write_bytes(arf(ORIGINAL))
    (box / "new" / "2.junk").write_bytes(b"\x00\xff not a report")
    (box / "new" / "3.big").write_bytes(b"x" * 20_000)
    policy = Policy.model_validate({"complaints": {"max_size": 10_000}})
    done = read_maildir(redis_store, policy, box)
    assert (done.recorded, done.too_large, done.failed) == (2, 1, 0)
    assert sorted(p.name for p in (box / "cur").iterdir()) == [
        "1.arf:2,S",
        "2.junk:2,S",
        "3.big:2,S",
    ]
    assert not list((box / "new").iterdir())
    kept = recent(redis_store)
    assert len(kept) == 2 and not any(e["attributed"] for e in kept)  # no trace keys here
    assert {e["kind"] for e in kept} == {"arf", "forward"}
    assert read_maildir(redis_store, policy, box).recorded == 0  # nothing read twice
