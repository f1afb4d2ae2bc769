"""`relaywarden watch`: follow Postfix's log and count delivery outcomes.

The position (inode and offset of the next unread byte) lives in Redis per
relay and moves in the same script that adds a batch's counts
(relaywarden/lua/outcomes.lua): after a crash or a restart the watcher resumes
exactly where the last counted batch ended, neither skipping nor counting a
line twice. A second watcher of the same relay finds the position moved under
it and starts over from the stored one instead of counting the batch again.

Rotation: a new inode at the path means the file was rotated; the rest of the
old file is read first if it can be found beside it (`FILE.1`, `FILE-*`, as
logrotate names them), then the new file from its start. Truncation (same
inode, shorter than the position) restarts at 0. Only whole lines are read: a
line still being written is left for the next pass.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from redis.crc import key_slot

from relaywarden.identity import vps_key
from relaywarden.limits import scripts
from relaywarden.message import normalise_ip
from relaywarden.outcomes import counters
from relaywarden.outcomes.counters import (
    AUTH_FAILED,
    BOUNCED,
    DEFERRED,
    DELIVERED,
    UNKNOWN_RCPT,
)
from relaywarden.outcomes.parse import AuthFailure, Delivery, Unknown, parse
from relaywarden.outcomes.record import Identity, lookup
from relaywarden.policy import Policy
from relaywarden.store import RedisStore, is_cluster
from relaywarden.subjects import Subject

log = logging.getLogger("relaywarden.watch")

LINES = Counter("relaywarden_watch_lines_total", "Postfix log lines read, by kind", ["kind"])
MAX_LINE = 64 * 1024  # a longer "line" is cut: no unbounded read for one line
CACHE_SIZE = 50_000  # queue id -> identity, most recent first


@dataclass(frozen=True)
class Position:
    inode: int
    offset: int


@dataclass
class BatchStats:
    lines: int = 0
    deliveries: int = 0
    auth_failures: int = 0
    unattributed: int = 0
    unknown: int = 0
    subjects: set[str] = field(default_factory=set)

    def add(self, other: BatchStats) -> None:
        self.lines += other.lines
        self.deliveries += other.deliveries
        self.auth_failures += other.auth_failures
        self.unattributed += other.unattributed
        self.unknown += other.unknown
        self.subjects |= other.subjects


def rotated_candidates(path: str) -> list[str]:
    """Where logrotate (or newsyslog) puts the previous file; compressed ones are useless."""
    found = [path + ".1", path + ".0", *sorted(glob.glob(glob.escape(path) + "-*"), reverse=True)]
    return [p for p in found if not p.endswith((".gz", ".bz2", ".xz", ".zst"))]


def read_lines(path: str, offset: int, limit: int) -> tuple[list[str], int]:
    """Up to `limit` whole lines from `offset`; returns them and the offset after them."""
    lines: list[str] = []
    with open(path, "rb") as f:
        f.seek(offset)
        while len(lines) < limit:
            raw = f.readline(MAX_LINE)
            if not raw:
                break
            if not raw.endswith(b"\n") and len(raw) < MAX_LINE:
                break  # still being written: read it whole next time
            offset += len(raw)
            lines.append(raw.decode("utf-8", "replace"))
    return lines, offset


class Watcher:
    def __init__(
        self,
        store: RedisStore,
        policy: Policy,
        log_file: str | None = None,
        *,
        clock: str = "",
        notify: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.path = log_file or policy.outcomes.log_file
        if not self.path:
            raise ValueError("no log file: set [outcomes] log_file or pass --log-file")
        self.relay = policy.quarantine.relay
        self.position_key = counters.position_key(store.keys.prefix, self.relay)
        self.clock = clock  # "" = Redis TIME; tests inject seconds since the epoch
        self.cache: OrderedDict[str, Identity | None] = OrderedDict()
        self.notify = notify
        self.totals = BatchStats()
        self._pending: bytes | None = None

    # -- position ------------------------------------------------------------
    def stored_position(self) -> Position | None:
        row: dict[bytes, bytes] = self.store.client.hgetall(self.position_key)  # type: ignore[assignment]
        self._pending = row.get(b"pending")  # Cluster: a batch moved past, not yet counted
        if not row:
            return None
        return Position(int(row.get(b"inode", b"0")), int(row.get(b"offset", b"0")))

    def _where_to_read(self, stored: Position | None) -> tuple[str, Position, Position] | None:
        """(file, position to commit against, position to read from), or None: nothing yet."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if stored is None:
            start = 0 if self.policy.outcomes.start_at == "start" else st.st_size
            return self.path, Position(0, 0), Position(st.st_ino, start)
        if stored.inode == st.st_ino:
            if st.st_size < stored.offset:
                log.warning("%s was truncated; reading it from the start", self.path)
                return self.path, stored, Position(st.st_ino, 0)
            return self.path, stored, stored
        for old in rotated_candidates(self.path):
            try:
                old_st = os.stat(old)
            except OSError:
                continue
            if old_st.st_ino == stored.inode and old_st.st_size > stored.offset:
                return old, stored, stored  # finish the rotated file first
        return self.path, stored, Position(st.st_ino, 0)

    # -- one batch -----------------------------------------------------------
    def step(self) -> int:
        """Read, count and commit one batch; the number of lines it held."""
        stored = self.stored_position()
        if self._pending is not None:
            self._apply(self._pending)
        where = self._where_to_read(stored)
        if where is None:
            return 0
        path, base, start = where
        lines, end = read_lines(path, start.offset, self.policy.outcomes.batch)
        moved = start != base
        if not lines and not moved:
            return 0
        stats, increments = self._count(lines)
        committed = self._commit(base, Position(start.inode, end), path, increments)
        if not committed:
            log.warning("position of relay %s moved under this watcher; resuming", self.relay)
            return 0
        self.totals.add(stats)
        for kind, n in (("unknown", stats.unknown), ("unattributed", stats.unattributed)):
            LINES.labels(kind=kind).inc(n)
        LINES.labels(kind="all").inc(stats.lines)
        if self.notify is not None and stats.subjects:
            self.notify(sorted(stats.subjects))
        return max(len(lines), 1 if moved else 0)

    def _count(self, lines: Iterable[str]) -> tuple[BatchStats, dict[Subject, dict[str, int]]]:
        stats = BatchStats()
        events = []
        for line in lines:
            stats.lines += 1
            event = parse(line)
            if isinstance(event, Unknown):
                stats.unknown += 1
            elif isinstance(event, Delivery | AuthFailure):
                events.append(event)
        self._resolve({e.queue_id for e in events if isinstance(e, Delivery)})
        unknown_dsn = set(self.policy.outcomes.unknown_dsn)
        increments: dict[Subject, dict[str, int]] = {}

        def bump(subjects: list[Subject], code: str) -> None:
            for subject in subjects:
                per = increments.setdefault(subject, {})
                per[code] = per.get(code, 0) + 1
                stats.subjects.add(str(subject))

        for event in events:
            if isinstance(event, AuthFailure):
                stats.auth_failures += 1
                bump(self._auth_subjects(event), AUTH_FAILED)
                continue
            identity = self.cache.get(event.queue_id)
            stats.deliveries += 1
            if identity is None:
                stats.unattributed += 1  # not through the milter: bounces, local mail
                continue
            subjects = identity.subjects()
            if event.status == "delivered":
                bump(subjects, DELIVERED)
            elif event.status == "deferred":
                bump(subjects, DEFERRED)
            else:  # bounced, or expired after its retries
                bump(subjects, BOUNCED)
                if event.dsn in unknown_dsn:
                    bump(subjects, UNKNOWN_RCPT)
        return stats, increments

    def _auth_subjects(self, event: AuthFailure) -> list[Subject]:
        address = normalise_ip(event.address)
        if address is None:
            return []
        out = [Subject("vps", vps_key(address, self.policy.identity.ipv6_prefix))]
        if event.login:
            out.append(Subject("user", event.login))
        return out

    def _resolve(self, queue_ids: set[str]) -> None:
        missing = [q for q in queue_ids if q not in self.cache]
        for q in queue_ids - set(missing):
            self.cache.move_to_end(q)
        for q, identity in lookup(self.store, self.relay, missing).items():
            self.cache[q] = identity
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)

    def _commit(
        self, base: Position, end: Position, path: str, increments: dict[Subject, dict[str, int]]
    ) -> bool:
        keys, scopes = counters.increments_spec(
            self.store.keys.prefix, increments, self.policy.outcomes.window
        )
        if is_cluster(self.store.client):
            return self._commit_in_slots(base, end, path, keys, scopes)
        keys = [self.position_key, *keys]
        spec = {
            "from": [base.inode, base.offset],
            "to": [end.inode, end.offset, path],
            "s": scopes,
        }

        def build(pipe: Any) -> None:
            scripts.evalsha(pipe, "outcomes", keys, [self.clock, json.dumps(spec)])

        (result,) = scripts.run(self.store.client, build, "counting delivery outcomes")
        return int(result[0]) == 1

    def _commit_in_slots(
        self, base: Position, end: Position, path: str, keys: list[str], scopes: list[Any]
    ) -> bool:
        """A Cluster: move the position with the batch's counts kept beside it
        ("pending"), then count them slot by slot, each slot once (outcomes.lua)."""
        gen = uuid.uuid4().hex
        pending = json.dumps({"g": gen, "k": keys, "s": scopes})
        spec = {
            "from": [base.inode, base.offset],
            "to": [end.inode, end.offset, path],
            "s": [],
            "pending": pending,
            "pgen": gen,
        }

        def move(pipe: Any) -> None:
            scripts.evalsha(pipe, "outcomes", [self.position_key], [self.clock, json.dumps(spec)])

        (result,) = scripts.run(self.store.client, move, "moving the log position")
        if int(result[0]) != 1:
            return False
        self._apply(pending.encode())
        return True

    def _apply(self, pending: bytes) -> None:
        """Count a pending batch in every slot it touches (each slot at most once),
        then clear it: one pipeline, one batch per node, and one call."""
        batch = json.loads(pending)
        gen, keys, scopes = batch["g"], batch["k"], batch["s"]
        groups: dict[int, list[int]] = {}
        for n, key in enumerate(keys):
            groups.setdefault(key_slot(key.encode()), []).append(n)
        prefix = self.store.keys.prefix

        def count(pipe: Any) -> None:
            for members in groups.values():
                first = keys[members[0]]
                tag = first[first.index("{") + 1 : first.index("}")]
                marker = f"{prefix}:outmark:{{{tag}}}"  # the same slot as the counters
                spec = {"once": gen, "s": [scopes[n] for n in members]}
                group_keys = [marker, *(keys[n] for n in members)]
                scripts.evalsha(pipe, "outcomes", group_keys, [self.clock, json.dumps(spec)])

        if groups:
            scripts.run(self.store.client, count, "counting delivery outcomes")
        done = json.dumps({"done": gen})

        def clear(pipe: Any) -> None:
            scripts.evalsha(pipe, "outcomes", [self.position_key], [self.clock, done])

        scripts.run(self.store.client, clear, "clearing the counted batch")

    # -- loops -----------------------------------------------------------------
    def run_once(self, max_batches: int = 1_000_000) -> BatchStats:
        """Read to the current end of the log, then return (cron, tests)."""
        for _ in range(max_batches):
            if self.step() == 0:
                break
        return self.totals

    def run(self, stop: threading.Event) -> None:
        """Follow the log until `stop` is set; Redis trouble is logged and retried."""
        while not stop.is_set():
            try:
                done = self.step()
            except Exception:  # the watcher outlives a Redis restart or a bad batch
                log.exception("watching %s failed; retrying", self.path)
                done = 0
                stop.wait(min(30.0, self.policy.outcomes.poll * 5))
            if done == 0:
                stop.wait(self.policy.outcomes.poll)


def follow_in_thread(watcher: Watcher) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=watcher.run, args=(stop,), name="outcome-watcher", daemon=True).start()
    return stop
