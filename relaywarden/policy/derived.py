"""Values derived from a policy alone, computed once per policy instead of once
per message. A loaded policy is never changed (a reload brings a new object), so
its derivations stay valid as long as it lives."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from relaywarden.policy.schema import Policy

T = TypeVar("T")

_MEMOS: dict[int, tuple[Policy, dict[object, Any]]] = {}


def memo(policy: Policy) -> dict[object, Any]:
    """This policy's memo: a dict for callers to fill under keys of their own.
    Found by id() and checked by identity, so a recycled id cannot serve another
    policy's values. Concurrent first calls may both compute: harmless."""
    entry = _MEMOS.get(id(policy))
    if entry is None or entry[0] is not policy:
        if len(_MEMOS) >= 8:  # older generations (reloads, tests' policies)
            _MEMOS.clear()
        entry = _MEMOS[id(policy)] = (policy, {})
    return entry[1]


def of_object(
    policy: Policy, name: str, obj: object, compute: Callable[[], T], *more: Hashable
) -> T:
    """`compute()` for `obj`, a part of `policy` (a plan's limits, say), once per
    policy. Keyed by `name`, the object's id and `more`; the entry keeps the object
    itself and is checked by identity, so a recycled id is recomputed, never served."""
    cache = memo(policy)
    key = (name, id(obj), *more)
    found = cache.get(key)
    if found is None or found[0] is not obj:
        found = cache[key] = (obj, compute())
    value: T = found[1]
    return value
