"""Policy sections for forged headers and spoofed senders: who the relay is, how
it looks things up in DNS, which brands it protects, and what each finding weighs."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from relaywarden.dns import parse_nameserver
from relaywarden.policy.inventory import Network
from relaywarden.policy.types import Duration, Section


def _networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network: {exc}") from None
    return value


def _domains(value: list[str]) -> list[str]:
    out = []
    for item in value:
        domain = item.strip().rstrip(".").lower()
        if not domain or " " in domain or "@" in domain:
            raise ValueError(f"{item!r} is not a domain name")
        out.append(domain)
    return out


class RelaySection(Section):
    """The relay itself: a Received header claiming these names or networks is forged."""

    hostnames: list[str] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    # Where the relay's mail leaves from: SPF is evaluated for these addresses.
    outbound_ips: list[str] = Field(default_factory=list)
    # Domains the relay DKIM-signs for: DMARC passes for them whatever SPF says.
    dkim_domains: list[str] = Field(default_factory=list)

    _hostnames = field_validator("hostnames", "dkim_domains")(_domains)
    _networks = field_validator("networks")(_networks)

    @field_validator("outbound_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return value

    @cached_property
    def parsed_networks(self) -> list[Network]:
        nets = [ipaddress.ip_network(n, strict=False) for n in self.networks]
        return nets + [ipaddress.ip_network(ip) for ip in self.outbound_ips]


class DnsSection(Section):
    # "HOST:PORT" (or "[V6]:PORT"); empty means the system resolver (/etc/resolv.conf).
    nameservers: list[str] = Field(default_factory=list)
    timeout: Duration = 1.0
    budget: Duration = 3.0
    max_lookups: int = Field(default=50, ge=5, le=500)
    negative_ttl: Duration = 300.0
    max_ttl: Duration = 86400.0
    cache_size: int = Field(default=10_000, ge=100)
    on_error: Literal["open", "tempfail"] = "tempfail"

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: list[str]) -> list[str]:
        for item in value:
            host, _ = parse_nameserver(item)
            ipaddress.ip_address(host)  # a name would need a resolver to find the resolver
        return value

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: float) -> float:
        if not 0 < value <= 20:
            raise ValueError("between 0 and 20 s: Postfix gives the milter 30 s at most")
        return value


class BrandsSection(Section):
    # Domains phishers imitate: a display name naming one with another domain's
    # address, or Reply-To elsewhere, is a finding.
    protected: list[str] = Field(default_factory=list)

    _protected = field_validator("protected")(_domains)


# Networks a hop in a Received header can never have come from.
RESERVED_NETWORKS = [
    "0.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "fe80::/10",
    "ff00::/8",
]


class HeaderWeights(Section):
    missing_from: float = 4.0
    duplicate_header: float = 3.0
    multiple_from_without_sender: float = 3.0
    missing_date: float = 1.0
    bad_date: float = 1.5
    date_skew: float = 1.5
    missing_message_id: float = 1.0
    bad_message_id: float = 1.0
    forged_received: float = 6.0
    reserved_received: float = 3.0
    header_injection: float = 5.0
    bad_encoded_word: float = 1.5
    invalid_utf8: float = 1.5
    display_name_address: float = 5.0
    display_name_brand: float = 5.0
    reply_to_elsewhere: float = 3.0


class HeadersCheckSection(Section):
    enabled: bool = True
    date_future: Duration = 86400.0
    date_past: Duration = 14 * 86400.0
    reserved_networks: list[str] = Field(default_factory=lambda: list(RESERVED_NETWORKS))
    weights: HeaderWeights = HeaderWeights()

    _reserved = field_validator("reserved_networks")(_networks)

    @cached_property
    def parsed_reserved(self) -> list[Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.reserved_networks]


class SenderWeights(Section):
    foreign_domain: float = 4.0
    org_mismatch: float = 0.5
    dmarc_spoof: float = 10.0
    # A domain no customer owns whose SPF authorises the relay: receivers would
    # see SPF (and so DMARC) pass for whoever sends as it through us.
    relay_spf_unowned: float = 3.0


class SenderCheckSection(Section):
    enabled: bool = True
    weights: SenderWeights = SenderWeights()
    # Plan name → weight of a sender domain the customer does not own.
    foreign_domain_by_plan: dict[str, float] = Field(default_factory=dict)
    # What spoofing a domain with DMARC p=reject/quarantine does regardless of score.
    dmarc_action: Literal["reject", "quarantine", "none"] = "reject"
    # Whether an envelope domain that does not exist is refused (550 5.1.8).
    reject_nonexistent_domain: bool = True
    # A DMARC record with pct below 100 or t=y asks for a softer hand: this
    # action instead of dmarc_action ("none": the finding is only logged).
    dmarc_soft_action: Literal["quarantine", "none"] = "quarantine"
    # Another customer's domain (or subdomain) in From or the envelope: forced.
    other_customer_domain: Literal["reject", "quarantine"] = "reject"
    # Bodies of DKIM-signed messages are kept (memory, then a temp file) up to
    # this many bytes to verify the signature; longer ones get no DKIM pass.
    dkim_max_body: int = Field(default=10 * 1024 * 1024, ge=0, le=200 * 1024 * 1024)

    def foreign_weight(self, plan: str) -> float:
        return self.foreign_domain_by_plan.get(plan, self.weights.foreign_domain)
