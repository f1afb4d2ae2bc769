"""The test and demo DNS server as our child process, on a free loopback port.

The milter in every devstack resolves only through this server (`--nameserver`),
never through the machine's resolver. `DEFAULT_ZONES` make every domain the
tests and the demo use resolve; a test adds zones of its own as BIND text.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, wait_for_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The relay's outbound address in the test world: SPF of customer domains includes it.
RELAY_OUTBOUND_IP = "192.0.2.10"
SILENT_DOMAIN = "slow.example"  # its nameserver never answers
NONEXISTENT_DOMAIN = "nxdomain.example"
BRAND_DOMAIN = "paypal.com"  # p=reject, SPF excludes the relay
NONE_DOMAIN = "lenient.example"  # p=none, SPF excludes the relay
BLOCKLIST_ZONE = "dbl.rw-test.example"  # the test DNS blocklist (URL and sender domains)


def _mail_domain(domain: str, spf: str, dmarc: str = "") -> str:
    lines = [
        f"{domain}. 300 IN A 192.0.2.80",
        f"{domain}. 300 IN MX 10 mx.{domain}.",
        f"mx.{domain}. 300 IN A 192.0.2.81",
        f'{domain}. 300 IN TXT "{spf}"',
    ]
    if dmarc:
        lines.append(f'_dmarc.{domain}. 300 IN TXT "{dmarc}"')
    return "\n".join(lines)


_CUSTOMER_SPF = f"v=spf1 ip4:{RELAY_OUTBOUND_IP} -all"
_ELSEWHERE_SPF = "v=spf1 ip4:198.51.100.0/24 -all"

DEFAULT_ZONES = "\n".join(
    [
        # Customer domains: SPF authorises the relay.
        *(
            _mail_domain(d, _CUSTOMER_SPF, "v=DMARC1; p=quarantine")
            for d in ("shop.example", "cafe.example", "bakery.example", "xn--caf-dma.example")
        ),
        # Domains the existing tests and demo send as or to.
        *(
            _mail_domain(d, "v=spf1 ?all")
            for d in (
                "vps.example",
                "example.org",
                "example.net",
                "example.com",
                "sinkhole.example",
                "news.spam.example",
                "failpoint.example",
                "evil.example",
                "other.example",
            )
        ),
        _mail_domain(BRAND_DOMAIN, _ELSEWHERE_SPF, "v=DMARC1; p=reject; rua=mailto:d@paypal.com"),
        _mail_domain(NONE_DOMAIN, _ELSEWHERE_SPF, "v=DMARC1; p=none"),
        # A test blocklist in the style of Spamhaus DBL / SURBL: a listed registered
        # domain answers 127.0.1.x under the zone; 127.255.255.254 is "refused".
        *(
            f"{domain}.{BLOCKLIST_ZONE}. 300 IN A {code}"
            for domain, code in (
                ("phish-bait.example", "127.0.1.4"),
                ("spam-sender.example", "127.0.1.2"),
                ("refused.example", "127.255.255.254"),
            )
        ),
    ]
)


class DnsServer:
    """`python -m relaywarden.devstack.dnsserver` on 127.0.0.1, UDP and TCP."""

    def __init__(self, workdir: Path, zones: str = DEFAULT_ZONES, silent: str = SILENT_DOMAIN):
        self.workdir = workdir
        self.zones = zones
        self.silent = silent
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        zone_file = self.workdir / "zones.txt"
        zone_file.write_text(self.zones + "\n")
        argv = [sys.executable, "-m", "relaywarden.devstack.dnsserver"]
        argv += ["--port", str(self.port), "--zones", str(zone_file), "--silent", self.silent]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.proc = Proc(argv, "dnsserver", self.workdir / "dns.log", env=env, cwd=PROJECT_ROOT)
        try:
            wait_for_port(LOOPBACK, self.port, timeout, "test DNS server")
        except TimeoutError:
            log = self.proc.log_text()[-3000:]
            self.stop()
            raise TimeoutError(f"DNS server did not start:\n{log}") from None
        return self.nameserver

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
