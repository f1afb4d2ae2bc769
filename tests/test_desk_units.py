"""The desk's pure parts: queue ids, sanitising, previews, the index entry, charts, policy."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaywarden.desk.index import Entry, entry_from_outcome
from relaywarden.desk.postfix import PostfixTools, QueueIdError, check_queue_id
from relaywarden.desk.preview import build_preview
from relaywarden.desk.status import per_hour
from relaywarden.identity import identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.policy.desk import QuarantineSection
from relaywarden.safetext import sanitise
from relaywarden.store import Outcome
from relaywarden.verdict import Action, Finding, Verdict
from relaywarden.web.chart import HEIGHT, bars

GOOD_IDS = ["4jbxmr3LvPzJ9Nx", "4jby6B6zlXzJBcm", "3F2A1B9C0D", "A1B2C3D4E5F6"]
BAD_IDS = ["ALL", "-", "-d", "../x", "ABC;rm", "", "hold", "deferred", "4jbx mr3", "abc\n", "$(id)",
           "4jbxmr3LvP", "3f2a1b9c0d", "A" * 40]  # fmt: skip


@pytest.mark.parametrize("qid", GOOD_IDS)
def test_real_queue_ids_pass(qid: str) -> None:
    assert check_queue_id(qid) == qid


@pytest.mark.parametrize("qid", BAD_IDS)
def test_bad_queue_ids_are_refused(qid: str) -> None:
    with pytest.raises(QueueIdError):
        check_queue_id(qid)


@given(st.text(max_size=40))
def test_no_accepted_id_can_be_an_option_path_or_keyword(text: str) -> None:
    try:
        check_queue_id(text)
    except QueueIdError:
        return
    assert text.isalnum() and text.isascii() and not text.startswith("-") and text != "ALL"


def test_bad_id_never_reaches_a_postfix_command(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    for tool in ("postsuper", "postqueue", "postcat"):
        script = tmp_path / tool
        script.write_text(f'#!/bin/sh\necho "$0 $*" >> {log}\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    tools = PostfixTools("/nonexistent", str(tmp_path))
    for bad in BAD_IDS:
        for action in (tools.release, tools.delete, tools.content):
            with pytest.raises(QueueIdError):
                action(bad)
    assert not log.exists()
    # A good id does reach the command, as one argument with -c first.
    with pytest.raises(Exception, match="not in the hold queue"):
        tools.delete("4jbxmr3LvPzJ9Nx")
    assert log.read_text().split() == [str(tmp_path / "postsuper"), "-c", "/nonexistent", "-d",
                                       "4jbxmr3LvPzJ9Nx", "hold"]  # fmt: skip


def test_sanitise_strips_controls_and_bidi_and_caps() -> None:
    assert sanitise("a\x1b[31mred\x00\r\nline\u202etxt.exe", 100) == "a[31mred linetxt.exe"
    assert sanitise("x" * 50, 10) == "x" * 9 + "…"
    assert sanitise(None, 10) == ""


def test_preview_decodes_and_never_keeps_markup() -> None:
    raw = (
        b"Subject: =?utf-8?b?w5xiZXJ3ZWlzdW5n?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p onclick=x()>Hallo <b>Welt</b></p>\r\n"
        b"--b--\r\n"
    )
    preview = build_preview(raw, 1000)
    assert ("Subject", "Überweisung") in preview.headers
    assert preview.html_only and "<" not in preview.text and "Hallo Welt" in preview.text


def test_preview_prefers_plain_text_caps_and_survives_bad_charsets() -> None:
    raw = b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n" + b"\x1b[2Jhi \xff" * 100
    preview = build_preview(raw, 50)
    assert preview.truncated and len(preview.text) == 50
    # The escape is not sent to a terminal, but shown: the reviewer sees it is there.
    assert "\x1b" not in preview.text and preview.text.startswith("[U+001B][2Jhi")


def test_index_entry_caps_recipients_and_text() -> None:
    data = b"From: Mallory <m@shop.example>\r\nSubject: " + b"S\x07" * 300 + b"\r\n\r\nbody\r\n"
    msg = message_from_bytes(
        data, mail_from="m@shop.example", rcpts=[f"r{n}@example.org" for n in range(80)]
    )
    finding = Finding(
        "blocks", "blocked", 5.0, evidence={"reason": "x" * 2000}, action=Action.QUARANTINE
    )
    verdict = Verdict(Action.QUARANTINE, None, 5.0, (finding,), "RW-ABCDEFGHIJ")
    cfg = QuarantineSection(relay_name="relay-1", max_recipients=10, max_text=40)
    entry = entry_from_outcome(Outcome(msg, identify(msg), verdict, {}), cfg, now=1000.0)
    assert (entry.relay, entry.queue_id, entry.ref, entry.time) == (
        "relay-1",
        "TESTQUEUEID",
        "RW-ABCDEFGHIJ",
        1000.0,
    )
    assert len(entry.recipients) == 10 and entry.recipient_total == 80
    assert len(entry.subject) == 40 and "\x07" not in entry.subject
    assert entry.from_header == "Mallory <m@shop.example>"
    assert len(entry.findings[0]["evidence"]["reason"]) == 500


def test_shown_state_tells_a_message_that_left_the_hold_queue() -> None:
    base = Entry(
        "4jbxmr3LvPzJ9Nx", "r", 0, "RW-X", None, "203.0.113.7", "", "a@b", [], 0, "", "", 0, []
    )
    assert Entry(**{**base.__dict__, "in_hold": False}).shown_state == "left the hold queue"
    assert Entry(**{**base.__dict__, "in_hold": True}).shown_state == "held"
    assert (
        Entry(**{**base.__dict__, "state": "released", "in_hold": False}).shown_state == "released"
    )


def test_per_hour_counts_the_last_24_hours_oldest_first() -> None:
    now = 100_000.0
    events = [{"_time": now - 10}, {"_time": now - 3600 * 2 - 1}, {"_time": now - 86400 - 5}]
    counts = per_hour(events, now)
    assert len(counts) == 24 and counts[-1] == 1 and counts[-3] == 1 and sum(counts) == 2


def test_chart_bars_scale_to_the_busiest_hour() -> None:
    drawn = bars([0, 5, 10])
    assert [b.height for b in drawn] == [0, HEIGHT / 2, HEIGHT]
    assert [b.hours_ago for b in drawn] == [2, 1, 0]
    assert bars([0, 0])[0].height == 0


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("quarantine", "relay_name", "relay one"),
        ("quarantine", "postfix_config_dir", "etc/postfix"),
        ("quarantine", "retention", "soon"),
        ("web", "listen", "8025"),
        ("web", "users", [{"name": "ana", "role": "admin", "password_hash": "$argon2id$x"}]),
        ("web", "users", [{"name": "ana", "password_hash": "plaintext"}]),
    ],
)
def test_bad_desk_settings_are_refused(section: str, key: str, value: object) -> None:
    with pytest.raises(PolicyError, match=f"{section}.{key}"):
        policy_from_dict({section: {key: value}})


def test_hash_password_prints_an_argon2_hash_the_policy_accepts() -> None:
    import subprocess
    import sys

    from argon2 import PasswordHasher

    from relaywarden.devstack.milter import PROJECT_ROOT

    argv = [sys.executable, "-m", "relaywarden", "web", "hash-password", "--stdin"]
    out = subprocess.run(
        argv, input="correct horse\n", capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT
    )
    assert out.returncode == 0, out.stderr
    digest = out.stdout.strip()
    assert PasswordHasher().verify(digest, "correct horse")
    user = {"name": "ana", "role": "operator", "password_hash": digest}
    assert policy_from_dict({"web": {"users": [user]}}).web.users[0].role == "operator"
    short = subprocess.run(
        argv, input="short\n", capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT
    )
    assert short.returncode == 2 and not short.stdout
