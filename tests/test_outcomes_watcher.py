"""The log watcher against a real redis-server and real files: attribution through
the queue id record, restarts, crashes between batches, rotation, truncation, a
second watcher of the same relay, and the judgement its counts lead to."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from relaywarden.outcomes import counters
from relaywarden.outcomes.check import judge, warnings
from relaywarden.outcomes.counters import NSUB, Tally
from relaywarden.outcomes.record import Identity, identity_key
from relaywarden.outcomes.watcher import Watcher
from relaywarden.policy.schema import Policy
from relaywarden.store import RedisStore
from relaywarden.subjects import Subject

DATA = Path(__file__).parent / "data" / "maillog-postfix.txt"
RELAY = "relay-a"
CLOCK = "1800000000"
# Queue ids of the recording, attributed as if the milter had recorded them.
OURS = {
    "4jcrgl4fQmzJ9SZ": Identity("203.0.113.7", "cust-42", "", "orders@shop.example", "RW-1"),
    "4jcrgl4l6NzJ9St": Identity("203.0.113.7", "cust-42", "alice", "orders@shop.example", "RW-2"),
    "4jcrgl4pzLzJ9SZ": Identity("203.0.113.7", "cust-42", "", "orders@shop.example", "RW-3"),
    "4jcrgl4xVRzJ9TC": Identity("198.51.100.9", "cust-7", "", "news@cafe.example", "RW-4"),
}


def policy(**outcomes: object) -> Policy:
    return Policy.model_validate(
        {
            "quarantine": {"relay_name": RELAY},
            "outcomes": {"enabled": True, "start_at": "start", "batch": 7, **outcomes},
        }
    )


def expected(lines: list[str], vps: str) -> Counter[str]:
    """Independent of the parser: what the recording says about one VPS's queue ids."""
    out: Counter[str] = Counter()
    mine = {q for q, i in OURS.items() if i.vps == vps}
    for line in lines:
        m = re.search(r": (\w+): (?:to=<[^>]*>, .*?|from=<[^>]*>, )status=(\w+)", line)
        if not m or m[1] not in mine:
            continue
        kind = {"sent": "d", "deferred": "f", "bounced": "b", "expired": "b"}[m[2]]
        out[kind] += 1
        if kind == "b" and re.search(r"dsn=5\.(1\.1|1\.10|4\.4),", line):
            out["u"] += 1
    return out


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    for qid, identity in OURS.items():
        key = identity_key(redis_store.keys.prefix, RELAY, qid)
        redis_store.client.set(key, identity.dumps())
    return redis_store


def tally(store: RedisStore, subject: str, pol: Policy) -> dict[str, int]:
    fields = store.client.hgetall(
        counters.window_key(store.keys.prefix, Subject(*subject.split(":", 1)))
    )  # type: ignore[arg-type]
    got = counters.counts(fields, pol.outcomes.window, NSUB, float(CLOCK))
    return {k: v for k, v in got.items() if v}


def test_counts_per_vps_customer_and_login(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    shutil.copy(DATA, log)
    pol = policy()
    totals = Watcher(store, pol, str(log), clock=CLOCK).run_once()
    lines = DATA.read_text().splitlines()
    assert totals.lines == len(lines) and totals.unknown == 0
    assert tally(store, "vps:203.0.113.7", pol) == dict(expected(lines, "203.0.113.7"))
    assert tally(store, "vps:198.51.100.9", pol) == dict(expected(lines, "198.51.100.9"))
    assert tally(store, "user:alice", pol) == {"b": 1, "u": 1}
    assert tally(store, "customer:cust-42", pol) == tally(store, "vps:203.0.113.7", pol)
    assert totals.unattributed > 0  # the bounces' own DSNs and mail not ours


def test_restart_neither_skips_nor_double_counts(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    lines = DATA.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    log.write_text("".join(lines[:half]) + lines[half][:20])  # a line still being written
    pol = policy()
    first = Watcher(store, pol, str(log), clock=CLOCK)
    first.step()  # one batch, then "killed": a new process takes over
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    Watcher(store, pol, str(log), clock=CLOCK).run_once()  # a restart with nothing new
    with log.open("a") as f:
        f.write(lines[half][20:] + "".join(lines[half + 1 :]))
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    plain = [line.rstrip("\n") for line in lines]
    assert tally(store, "vps:203.0.113.7", pol) == dict(expected(plain, "203.0.113.7"))
    assert tally(store, "vps:198.51.100.9", pol) == dict(expected(plain, "198.51.100.9"))


def test_rotation_reads_the_rest_of_the_old_file_first(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    lines = DATA.read_text().splitlines(keepends=True)
    a, b = len(lines) // 3, 2 * len(lines) // 3
    log.write_text("".join(lines[:a]))
    pol = policy()
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    with log.open("a") as f:  # written after our last read, then rotated away
        f.write("".join(lines[a:b]))
    os.rename(log, tmp_path / "maillog.1")
    log.write_text("".join(lines[b:]))
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    plain = [line.rstrip("\n") for line in lines]
    assert tally(store, "vps:198.51.100.9", pol) == dict(expected(plain, "198.51.100.9"))
    assert tally(store, "vps:203.0.113.7", pol) == dict(expected(plain, "203.0.113.7"))


def test_truncation_starts_over(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    lines = DATA.read_text().splitlines(keepends=True)
    log.write_text("".join(lines))
    pol = policy()
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    before = tally(store, "vps:203.0.113.7", pol)
    sent = next(line for line in lines if "4jcrgl4fQmzJ9SZ: to=" in line)
    with log.open("r+") as f:  # copytruncate: same inode, shorter file
        f.truncate(0)
        f.write(sent)
    Watcher(store, pol, str(log), clock=CLOCK).run_once()
    assert tally(store, "vps:203.0.113.7", pol) == {**before, "d": before["d"] + 1}


def test_a_second_watcher_does_not_count_a_batch_twice(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    shutil.copy(DATA, log)
    pol = policy()
    one, two = (
        Watcher(store, pol, str(log), clock=CLOCK),
        Watcher(store, pol, str(log), clock=CLOCK),
    )
    # Both read from the same stored position; only the first commit counts.
    where = one._where_to_read(one.stored_position())
    assert where is not None
    path, base, start = where
    from relaywarden.outcomes.watcher import Position, read_lines

    lines, end = read_lines(path, start.offset, 50)
    _stats, inc = one._count(lines)
    assert one._commit(base, Position(start.inode, end), path, inc)
    assert not two._commit(base, Position(start.inode, end), path, inc)
    one.run_once()
    two.run_once()
    plain = DATA.read_text().splitlines()
    assert tally(store, "vps:198.51.100.9", pol) == dict(expected(plain, "198.51.100.9"))


def test_no_stored_position_starts_at_the_end_by_default(store: RedisStore, tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    shutil.copy(DATA, log)
    pol = policy(start_at="end")
    assert Watcher(store, pol, str(log), clock=CLOCK).run_once().lines == 0
    assert tally(store, "vps:203.0.113.7", pol) == {}


# -- the judgement: share AND minimum count ---------------------------------------
def make(subject: str, d: int, f: int, b: int, u: int = 0, a: int = 0) -> Tally:
    return Tally(subject, {"d": d, "f": f, "b": b, "u": u, "a": a})


def test_share_and_count_both_needed() -> None:
    cfg = policy(bounced={"share": 0.3, "min_count": 20}).outcomes
    blaster = judge([make("vps:192.0.2.1", d=16, f=0, b=24, u=24)], cfg)
    assert {f.name for f in blaster} == {"bounced", "unknown-recipients"}
    bounced = next(f for f in blaster if f.name == "bounced")
    assert bounced.evidence["share"] == 0.6 and bounced.evidence["count"] == 24
    assert "24 of 40 delivery attempts bounced (60%)" in bounced.evidence["explain"]
    assert bounced.reply is not None and bounced.reply.code == 451
    assert judge([make("vps:192.0.2.2", d=49, f=0, b=1)], cfg) == []  # 2 %
    assert judge([make("vps:192.0.2.3", d=2, f=0, b=3)], cfg) == []  # 60 %, but only 3


def test_warning_line_below_the_enforced_one() -> None:
    cfg = policy(bounced={"share": 0.5, "min_count": 30, "warn_share": 0.2, "warn_min_count": 5})
    tallies = [make("customer:c1", d=20, f=0, b=8)]
    assert judge(tallies, cfg.outcomes) == []
    (notice,) = warnings(tallies, cfg.outcomes)
    assert notice["subject"] == "customer:c1" and notice["kind"] == "bounced"
    assert notice["count"] == 8 and notice["enforced_share"] == 0.5


def test_auth_failures_make_a_brute_force_finding() -> None:
    cfg = policy(auth_failures={"min_count": 5, "action": "reject"}).outcomes
    (finding,) = judge([make("vps:198.51.100.23", d=0, f=0, b=0, a=7)], cfg)
    assert finding.name == "auth-failures" and finding.reply is not None
    assert finding.reply.code == 550


def test_failed_logins_are_counted_per_address_and_login(store: RedisStore, tmp_path: Path) -> None:
    # Real smtpd lines (recorded with SASL on): PLAIN and LOGIN failures from one address.
    recorded = [
        line
        for line in DATA.read_text().splitlines(keepends=True)
        if "[198.51.100.23]: SASL" in line and "authentication failed" in line
    ]
    assert len(recorded) == 2
    log = tmp_path / "maillog"
    log.write_text("".join(recorded * 3))
    pol = policy(auth_failures={"min_count": 5})
    assert Watcher(store, pol, str(log), clock=CLOCK).run_once().auth_failures == 6
    assert tally(store, "vps:198.51.100.23", pol) == {"a": 6}
    assert tally(store, "user:alice@relay.test", pol) == {"a": 6}
    counts = tally(store, "vps:198.51.100.23", pol)
    full = Tally("vps:198.51.100.23", {**dict.fromkeys("dfbuac", 0), **counts})
    (finding,) = judge([full], pol.outcomes)
    assert finding.name == "auth-failures" and finding.evidence["count"] == 6
