"""A resolver for unit tests: the real Resolver (cache, budget, cap) whose wire
is a dict built from the same zone text the test DNS server serves."""

from __future__ import annotations

from collections import defaultdict

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from relaywarden.devstack.dns import DEFAULT_ZONES, SILENT_DOMAIN
from relaywarden.dns import Answer, Resolver
from relaywarden.errors import DnsError


class ZoneResolver(Resolver):
    def __init__(self, zones: str = DEFAULT_ZONES, **kw: float) -> None:
        super().__init__(["127.0.0.1:1"], **kw)  # type: ignore[arg-type]
        self.records: dict[tuple[str, str], list[object]] = defaultdict(list)
        self.ttls: dict[tuple[str, str], float] = {}
        for line in zones.splitlines():
            if not line.strip():
                continue
            name, ttl, _cls, rdtype, data = line.split(None, 4)
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), data)
            self.records[(name.lower(), rdtype)].append(rdata)
            self.ttls[(name.lower(), rdtype)] = float(ttl)
        self.names = {name for name, _ in self.records}
        self.asked: list[tuple[str, str]] = []

    def _wire(self, qname: dns.name.Name, rdtype: str, lifetime: float) -> tuple[Answer, float]:
        name = qname.to_text().lower()
        self.queries += 1
        self.asked.append((name, rdtype))
        if name.rstrip(".").endswith(SILENT_DOMAIN):
            raise DnsError("timeout (fake)")
        records = tuple(self.records.get((name, rdtype), ()))
        exists = any(n == name or n.endswith("." + name) for n in self.names)
        ttl = self.ttls.get((name, rdtype), 60.0)  # 60 s: the test server's negative TTL
        return Answer(name, rdtype, nxdomain=not exists, records=records), ttl
