"""`network:` and `domain:` blocks made at runtime (CLI, web, API, escalation),
enforced by every milter.

A block on a VPS, customer, login or sender is one key the MAIL FROM round trip
fetches. A network contains the client at any prefix length and a domain covers
its subdomains, so those are not single-key lookups: each milter keeps the
current set in process, re-read from Redis on a background thread every
`[limits.inventory] refresh` (10 s by default, like the inventory overrides).
A block made or lifted at runtime is in force on every relay within that delay;
the hot path never waits for it. A failed refresh keeps the last good set.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable

from relaywarden.message import Message
from relaywarden.store import BlockRecord, RedisStore
from relaywarden.subjects import parse_subject

log = logging.getLogger("relaywarden.wideblocks")
WIDE_KINDS = ("network", "domain")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WideBlocks:
    def __init__(self) -> None:
        self.networks: list[tuple[Network, BlockRecord]] = []
        self.domains: dict[str, BlockRecord] = {}
        self.refreshed = 0.0

    def load(self, records: list[BlockRecord]) -> None:
        networks, domains = [], {}
        for record in records:
            try:
                subject = parse_subject(record.subject)
            except ValueError:
                continue
            if subject.kind == "network":
                networks.append((subject.network, record))
            elif subject.kind == "domain":
                domains[subject.value] = record
        self.networks, self.domains = networks, domains  # swapped whole: readers see one set
        self.refreshed = time.time()

    def matching(self, message: Message, now: float) -> list[BlockRecord]:
        out = []
        address = message.client_address
        if address is not None:
            out += [
                r
                for net, r in self.networks
                if net.version == address.version and address in net and r.active(now)
            ]
        name = message.sender_domain
        while name:
            record = self.domains.get(name)
            if record is not None and record.active(now):
                out.append(record)
            _, _, name = name.partition(".")
        return out


WIDE = WideBlocks()


class Refresher:
    """The background thread; `store` is asked for each round, so a reload's new
    store is used from the next refresh on."""

    def __init__(self, store: Callable[[], RedisStore], every: Callable[[], float]) -> None:
        self._store, self._every = store, every
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="relaywarden-blocks", daemon=True)

    def refresh_now(self) -> None:
        records = self._store().list_blocks()
        WIDE.load([r for r in records if r.subject.split(":", 1)[0] in WIDE_KINDS])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_now()
            except Exception as exc:  # keep the last good set; try again next round
                log.warning("network/domain blocks not refreshed: %s", exc)
            self._stop.wait(self._every())

    def start(self) -> Refresher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
