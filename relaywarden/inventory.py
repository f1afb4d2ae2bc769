"""The customer inventory at scale: the policy's [[customers]], a large file the
policy points to, and runtime overrides in Redis (`relaywarden inventory set`).
It lives beside identity.py, which is what reads it (limits only read its result).

A milter keeps an in-process copy and re-reads the Redis overrides every
`[limits.inventory] refresh` (10 s by default) on a background thread, so the
hot path never waits for Redis: a change made with `inventory set` takes effect
within that interval on every relay (the documented staleness).
"""

from __future__ import annotations

import csv
import ipaddress
import json
import logging
import threading
import tomllib
from pathlib import Path

from pydantic import ValidationError

from relaywarden.identity import Inventory
from relaywarden.message import IPAddress
from relaywarden.policy import Policy, PolicyError
from relaywarden.policy.inventory import CustomerEntry
from relaywarden.policy.limits import plan_named
from relaywarden.store import RedisStore, redis_errors
from relaywarden.subjects import fold_login

log = logging.getLogger("relaywarden.inventory")


def overrides_key(store: RedisStore) -> str:
    return f"{store.keys.prefix}:inventory"


class IndexedInventory(Inventory):
    """Longest-prefix lookup by hashing: one dict probe per distinct prefix length,
    instead of a scan over every network (a large provider has 100,000 of them)."""

    def __init__(self, customers: list[CustomerEntry]) -> None:
        super().__init__(customers)
        self._index: dict[tuple[int, int], dict[int, CustomerEntry]] = {}
        for net, customer in reversed(self._by_net):  # most specific written last wins
            table = self._index.setdefault((net.version, net.prefixlen), {})
            table[int(net.network_address)] = customer
        self._lengths = sorted(self._index, key=lambda k: k[1], reverse=True)

    def lookup(self, address: IPAddress | None, sasl_user: str) -> CustomerEntry | None:
        login = fold_login(sasl_user)
        if login and login in self._by_user:
            return self._by_user[login]
        if address is None:
            return None
        bits = 32 if address.version == 4 else 128
        value = int(address)
        for version, length in self._lengths:
            if version != address.version:
                continue
            masked = value >> (bits - length) << (bits - length) if length else 0
            found = self._index[(version, length)].get(masked)
            if found is not None:
                return found
        return None


def _entry(data: dict[str, object], where: str, policy: Policy) -> CustomerEntry:
    try:
        entry = CustomerEntry.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PolicyError([f"{where}: {reasons}"]) from None
    if plan_named(policy.plans, entry.plan) is None:
        raise PolicyError([f"{where}: plan: unknown plan {entry.plan!r}"])
    return entry


def load_file(path: Path, policy: Policy) -> list[CustomerEntry]:
    """Customers from a .csv (id,plan,networks,sasl_users,domains; lists space-separated)
    or a .toml with [[customers]]; every error names the file and the row."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from None
    if path.suffix == ".toml":
        try:
            rows = tomllib.loads(text).get("customers", [])
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError([f"{path}: not valid TOML: {exc}"]) from None
        return [_entry(row, f"{path}: customers[{n}]", policy) for n, row in enumerate(rows)]
    entries: list[CustomerEntry] = []
    for row in csv.DictReader(text.splitlines()):
        data: dict[str, object] = {"id": row.get("id") or "", "plan": row.get("plan") or "default"}
        for column in ("networks", "sasl_users", "domains"):
            data[column] = (row.get(column) or "").split()
        entries.append(_entry(data, f"{path}: line {len(entries) + 2}", policy))
    return entries


def read_overrides(store: RedisStore) -> dict[str, CustomerEntry]:
    with redis_errors("inventory read"):
        raw: dict[bytes, bytes] = store.client.hgetall(overrides_key(store))  # type: ignore[assignment]
    out = {}
    for key, value in raw.items():
        try:
            entry = CustomerEntry.model_validate(json.loads(value))
        except (ValueError, ValidationError):
            log.error("ignoring a malformed inventory override %r", key[:64])
            continue
        out[entry.id] = entry
    return out


def base_customers(policy: Policy, policy_path: Path | None) -> list[CustomerEntry]:
    customers = {c.id: c for c in policy.customers}
    name = policy.limits.inventory.file
    if name:
        base = policy_path.parent if policy_path is not None else Path.cwd()
        for entry in load_file(base / name, policy):
            customers.setdefault(entry.id, entry)  # the policy file's own entry wins
    return list(customers.values())


def merged(base: list[CustomerEntry], overrides: dict[str, CustomerEntry]) -> list[CustomerEntry]:
    by_id = {c.id: c for c in base}
    by_id.update(overrides)
    return list(by_id.values())


class LiveInventory(IndexedInventory):
    """An IndexedInventory that swaps in Redis overrides on a background thread."""

    def __init__(self, base: list[CustomerEntry], store: RedisStore, refresh: float) -> None:
        super().__init__(base)
        self.base = base
        self.store = store
        self.refresh = refresh
        self.current: IndexedInventory = IndexedInventory(base)
        self._stop = threading.Event()
        self._seen: dict[str, CustomerEntry] | None = None
        self._thread = threading.Thread(
            target=self._loop, name="relaywarden-inventory", daemon=True
        )
        self._thread.start()

    def lookup(self, address: IPAddress | None, sasl_user: str) -> CustomerEntry | None:
        return self.current.lookup(address, sasl_user)

    def refresh_now(self) -> None:
        overrides = read_overrides(self.store)
        if overrides != self._seen:
            self.current = IndexedInventory(merged(self.base, overrides))
            self.customers = self.current.customers
            self._seen = overrides

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_now()
            except Exception as exc:  # keep the last good copy; try again next round
                log.warning("inventory overrides not refreshed: %s", exc)
            self._stop.wait(self.refresh)

    def close(self) -> None:
        self._stop.set()


def build_inventory(policy: Policy, policy_path: Path | None, store: RedisStore) -> Inventory:
    base = base_customers(policy, policy_path)
    return LiveInventory(base, store, policy.limits.inventory.refresh)


def vps_network(text: str, prefix: int) -> str:
    """`vps:` as the milter keys it: an IPv4 address, or an IPv6 address's /prefix."""
    from relaywarden.identity import vps_key
    from relaywarden.message import normalise_ip

    value = text.split("/", 1)[0] if "/" in text else text
    address = normalise_ip(value)
    if address is None:
        raise ValueError(f"{text!r} is not an IP address")
    if isinstance(address, ipaddress.IPv6Address) and "/" in text:
        address = ipaddress.ip_network(text, strict=False).network_address
    return vps_key(address, prefix)
