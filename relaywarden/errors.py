"""Errors from the things RelayWarden depends on (Redis, DNS).

A check raises one of these; the engine turns it into the policy's fail mode
(let the message through, or tempfail it) and counts it. Internal bugs are not
DependencyErrors: they reach the adapter, which answers 451 4.3.0.
"""

from __future__ import annotations


class DependencyError(Exception):
    """A service we depend on failed or was too slow."""

    service = "dependency"


class StoreError(DependencyError):
    """Redis failed, timed out or answered nonsense."""

    service = "redis"


class DnsError(DependencyError):
    """The resolver failed, timed out or ran out of the message's DNS budget."""

    service = "dns"
