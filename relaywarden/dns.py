"""The one resolver: bounded per query, per message and in memory.

A customer decides which domains the relay looks up, so every lookup is
bounded: a per-query timeout, a per-message budget of DNS time (well under
Postfix's milter timeouts), a cap on lookups per message, and a cache that
honours TTLs, negative answers included. Any failure is a `DnsError`, which the
engine turns into the policy's `[dns] on_error`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from relaywarden.errors import DnsError


class DnsBudgetExhausted(DnsError):
    """The message has spent its DNS time or its number of lookups."""


@dataclass(frozen=True)
class Answer:
    """What the DNS said about (name, type): records, or why there are none."""

    name: str
    rdtype: str
    nxdomain: bool = False
    records: tuple[Any, ...] = ()  # dnspython rdata, immutable

    @property
    def texts(self) -> list[str]:
        """TXT records with their strings joined, decoded leniently."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.records]


def parse_nameserver(text: str) -> tuple[str, int]:
    """ "127.0.0.1:5353", "[::1]:53" or "192.0.2.1" (port 53) as (host, port)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in nameserver {text!r}")
    return host, int(port)


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_PLAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def query_name(domain: str) -> dns.name.Name:
    """A domain as a DNS name (IDNA for U-labels); ValueError when it cannot be one."""
    try:
        return dns.name.from_unicode(domain.strip().rstrip(".").lower() + ".")
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise ValueError(str(exc)) from exc


class Cache:
    """TTL-honouring answers, bounded in size; thread-safe (one per milter)."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, Answer]] = {}

    def get(self, key: tuple[str, str]) -> Answer | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: tuple[str, str], answer: Answer, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.size:
                now = self.clock()
                for old in [k for k, (exp, _) in self._entries.items() if exp <= now]:
                    del self._entries[old]
                while len(self._entries) >= self.size:  # oldest insertion goes first
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (self.clock() + ttl, answer)

    def __len__(self) -> int:
        return len(self._entries)


class Resolver:
    """Shared by all milter threads; each message looks up through a `session()`."""

    def __init__(
        self,
        nameservers: list[str],
        *,
        timeout: float = 1.0,
        budget: float = 3.0,
        max_lookups: int = 50,
        negative_ttl: float = 300.0,
        max_ttl: float = 86400.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.budget = budget
        self.max_lookups = max_lookups
        self.negative_ttl = negative_ttl
        self.max_ttl = max_ttl
        self.clock = clock
        self.cache = Cache(cache_size, clock)
        # Empty list: the system's resolv.conf (production default); never in tests.
        self._dns = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            self._dns.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
            ]
        self._dns.timeout = timeout
        self._dns.cache = None  # ours honours negative TTLs and is bounded
        self._dns.retry_servfail = False
        self.queries = 0  # wire queries sent, for the benchmark and tests

    def session(self) -> DnsSession:
        return DnsSession(self)

    def query(self, name: str, rdtype: str, lifetime: float) -> Answer:
        """One lookup, from the cache or the wire; DnsError when the DNS failed."""
        # A plain ASCII host name is its own text form: the cache is asked without
        # building a dns.name (IDNA), which costs more than the whole cache hit.
        plain = name.strip().rstrip(".").lower()
        if len(plain) <= 253 and _PLAIN.fullmatch(plain):
            cached = self.cache.get((plain + ".", rdtype))
            if cached is not None:
                return cached
        try:
            qname = query_name(name)
        except ValueError:
            return Answer(name, rdtype, nxdomain=True)  # not a name: it cannot exist
        key = (qname.to_text(), rdtype)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        answer, ttl = self._wire(qname, rdtype, lifetime)
        self.cache.put(key, answer, min(ttl, self.max_ttl))
        return answer

    def _wire(self, qname: dns.name.Name, rdtype: str, lifetime: float) -> tuple[Answer, float]:
        self.queries += 1
        try:
            result = self._dns.resolve(
                qname, rdtype, lifetime=lifetime, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            response = exc.kwargs.get("responses", {}).get(qname)
            return Answer(str(qname), rdtype, nxdomain=True), self._negative_ttl(response)
        except dns.exception.Timeout as exc:
            raise DnsError(f"timeout looking up {rdtype}") from exc
        except dns.exception.DNSException as exc:  # SERVFAIL, REFUSED, malformed...
            raise DnsError(f"{type(exc).__name__} looking up {rdtype}") from exc
        if result.rrset is None:
            return Answer(str(qname), rdtype), self._negative_ttl(result.response)
        return Answer(str(qname), rdtype, records=tuple(result.rrset)), float(result.rrset.ttl)

    def _negative_ttl(self, response: Any) -> float:
        """RFC 2308: the SOA's TTL capped by its MINIMUM; without a SOA, the policy's."""
        for rrset in getattr(response, "authority", None) or ():
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum))
        return self.negative_ttl


class DnsSession:
    """One message's lookups: its budget of DNS time and its number of lookups."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.spent = 0.0
        self.lookups = 0

    @property
    def remaining(self) -> float:
        return self.resolver.budget - self.spent

    def lookup(self, name: str, rdtype: str) -> Answer:
        self.lookups += 1
        if self.lookups > self.resolver.max_lookups:
            raise DnsBudgetExhausted(f"more than {self.resolver.max_lookups} lookups")
        remaining = self.remaining
        if remaining <= 0:
            raise DnsBudgetExhausted("DNS time budget spent")
        started = self.resolver.clock()
        try:
            return self.resolver.query(name, rdtype, min(self.resolver.timeout, remaining))
        finally:
            self.spent += self.resolver.clock() - started

    def txt(self, name: str) -> list[str]:
        return self.lookup(name, "TXT").texts

    def domain_exists(self, domain: str) -> bool:
        """RFC 5321 §5.1: mail can reach it (MX, else A or AAAA); NXDOMAIN is no."""
        for rdtype in ("MX", "A", "AAAA"):
            answer = self.lookup(domain, rdtype)
            if answer.nxdomain:
                return False
            if answer.records:
                return True
        return False
