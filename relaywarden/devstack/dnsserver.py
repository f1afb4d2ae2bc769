"""An authoritative DNS server for tests and the demo (run as a child process).

    python -m relaywarden.devstack.dnsserver --port N --zones FILE [--silent DOMAIN ...]

Serves the records of a zone file (BIND syntax, absolute names) over UDP and TCP
on 127.0.0.1. A name with no records but records below it exists (NODATA); any
other name is NXDOMAIN; both carry a SOA so resolvers can cache the negative
answer. Queries at or under a `--silent` domain are never answered: the timeout
case.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, DNSError, DNSLabel, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

NEGATIVE_TTL = 60


class ZoneResolver:
    def __init__(self, records: list[RR], silent: list[str]) -> None:
        self.records = records
        self.names = {str(rr.rname).lower() for rr in records}
        self.silent = [s.lower().rstrip(".") + "." for s in silent]

    def exists(self, qname: str) -> bool:
        return qname in self.names or any(n.endswith("." + qname) for n in self.names)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        qname = str(request.q.qname).lower()
        if any(qname == s or qname.endswith("." + s) for s in self.silent):
            raise DNSError("silent domain: deliberately unanswered")
        reply = request.reply()
        reply.header.aa = 1
        for rr in self.records:
            if str(rr.rname).lower() == qname and request.q.qtype in (rr.rtype, QTYPE.ANY):
                reply.add_answer(rr)
        if not reply.rr:
            if not self.exists(qname):
                reply.header.rcode = RCODE.NXDOMAIN
            apex = DNSLabel(".".join(qname.rstrip(".").split(".")[-2:]) + ".")
            soa = SOA(
                "ns." + str(apex), "hostmaster." + str(apex), (1, 3600, 600, 86400, NEGATIVE_TTL)
            )
            reply.add_auth(RR(apex, QTYPE.SOA, rdata=soa, ttl=NEGATIVE_TTL))
        return reply


class QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-data,-recv,-send,-error")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--zones", type=Path, required=True)
    parser.add_argument("--silent", action="append", default=[])
    args = parser.parse_args()
    records = RR.fromZone(args.zones.read_text())
    resolver = ZoneResolver(records, args.silent)
    servers = [
        DNSServer(
            resolver,
            port=args.port,
            address="127.0.0.1",
            tcp=tcp,
            logger=QuietLogger(),
            handler=DNSHandler,
        )
        for tcp in (False, True)  # UDP first: TCP being up is the readiness signal
    ]
    for server in servers:
        server.start_thread()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
