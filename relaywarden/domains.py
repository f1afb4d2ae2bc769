"""Organisational domains (RFC 7489 §3.2) from the Public Suffix List.

`publicsuffixlist` ships the list in the package: nothing is downloaded at run
time. A domain under no listed suffix is its own last two labels (the PSL's
default rule "*").
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()


def normalise(domain: str) -> str:
    """Lower case, no trailing dot, A-labels as U-labels so both spellings compare equal."""
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("ascii").decode("idna") if "xn--" in domain else domain
    except UnicodeError:
        return domain


@lru_cache(maxsize=65536)
def org_domain(domain: str) -> str:
    domain = normalise(domain)
    return _PSL.privatesuffix(domain) or domain


def same_org(a: str, b: str) -> bool:
    return org_domain(a) == org_domain(b)


def within(domain: str, orgs: frozenset[str]) -> bool:
    """True when `domain`'s organisational domain is one of `orgs` (already org domains)."""
    return org_domain(domain) in orgs


def org_domains(domains: frozenset[str] | list[str]) -> frozenset[str]:
    return frozenset(org_domain(d) for d in domains)


def domain_of(address: str) -> str:
    return normalise(address.rsplit("@", 1)[1]) if "@" in address else ""
