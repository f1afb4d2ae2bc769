"""Checks that span several keys of a policy: run on the raw file, so that one pass
of `check-config` reports them beside every per-key error.

Pydantic runs a model's own "after" validators only when every field is valid,
which would hide an unknown plan behind a typo elsewhere; these functions read
the raw TOML data instead and skip whatever is malformed (the per-key
validation reports that).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

BUILTIN_PLANS = frozenset({"default"})


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [row if isinstance(row, Mapping) else {} for row in value]


def cross_errors(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key path, reason) for every cross-key problem in a policy's raw data."""
    plans = set(_table(data.get("plans"))) | BUILTIN_PLANS
    customers = _rows(data.get("customers"))
    overrides = _rows(_table(data.get("limits")).get("overrides"))
    errors: list[tuple[str, str]] = []
    errors += _duplicate_ids(customers)
    for where, rows in (("customers", customers), ("limits.overrides", overrides)):
        for n, row in enumerate(rows):
            plan = row.get("plan")
            if isinstance(plan, str) and plan and plan not in plans:
                errors.append(
                    (f"{where}[{n}].plan", f"unknown plan {plan!r} (define it as [plans.{plan}])")
                )
    errors += _shared_networks(customers)
    return errors


def _duplicate_ids(customers: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    errors = []
    for n, row in enumerate(customers):
        ident = row.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            first = f"customers[{seen[ident]}]"
            reason = f"customer id {ident!r} is listed twice ({first})"
            errors.append((f"customers[{n}].id", reason))
        else:
            seen[ident] = n
    return errors


def _shared_networks(customers: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The same network under two customers: which one a VPS belongs to would be
    an accident of file order. (A smaller network inside a larger one of another
    customer is allowed: the most specific wins, e.g. a reseller's sub-range.)"""
    owner: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, tuple[int, str]] = {}
    errors = []
    for n, row in enumerate(customers):
        nets = row.get("networks")
        for text in nets if isinstance(nets, list) else []:
            try:
                net = ipaddress.ip_network(str(text), strict=False)
            except ValueError:
                continue
            ident = str(row.get("id", f"customers[{n}]"))
            first = owner.get(net)
            if first is not None and first[1] != ident:
                errors.append(
                    (
                        f"customers[{n}].networks",
                        f"{net} is also claimed by customer {first[1]!r} (customers[{first[0]}])",
                    )
                )
            else:
                owner.setdefault(net, (n, ident))
    return errors
