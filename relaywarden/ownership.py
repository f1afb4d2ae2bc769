"""Which customer owns a domain, across the whole provider: the reverse of the
inventory's `domains` lists ([[customers]], the inventory file and the runtime
overrides alike, since all of them end up in `Inventory.customers`).

Built once per inventory version (a refresh of the overrides makes a new
`customers` mapping, so the index follows it within `[limits.inventory]
refresh`), then one dict probe per label of the domain looked up.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from relaywarden import domains


class DomainOwners:
    """domain → customer id; a subdomain belongs to the owner of its nearest listed parent."""

    def __init__(self, customers: Mapping[str, Any]) -> None:
        self._owner: dict[str, str] = {}
        self.shared: set[str] = set()  # listed by more than one customer: nobody's alone
        for customer in customers.values():
            for domain in getattr(customer, "domains", ()):
                name = domains.normalise(domain)
                previous = self._owner.setdefault(name, customer.id)
                if previous != customer.id:
                    self.shared.add(name)

    def owner(self, domain: str) -> str | None:
        """The customer that lists `domain` or its nearest listed parent, if exactly one does."""
        name = domains.normalise(domain)
        while name:
            if name in self._owner:
                return None if name in self.shared else self._owner[name]
            _, _, name = name.partition(".")
        return None

    def __len__(self) -> int:
        return len(self._owner)


EMPTY = DomainOwners({})
_lock = threading.Lock()
_cache: tuple[int, Mapping[str, Any], DomainOwners] | None = None


def owners_for(customers: Mapping[str, Any]) -> DomainOwners:
    """The index of this inventory version (rebuilt only when the mapping changes)."""
    global _cache
    cached = _cache
    if cached is not None and cached[1] is customers:
        return cached[2]
    index = DomainOwners(customers)
    with _lock:
        _cache = (id(customers), customers, index)
    return index
