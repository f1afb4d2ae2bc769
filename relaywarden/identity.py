"""Who sent a message: customer, plan, VPS, SASL user, sender domain.

Only what the relay itself observed decides identity (the client address Postfix
saw and the SASL login it verified). Headers and HELO are the customer's words
and never choose whose limits apply.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from relaywarden.message import IPAddress, Message
from relaywarden.subjects import Subject

DEFAULT_IPV6_PREFIX = 64


def vps_key(address: IPAddress | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """An IPv4 VPS is its address; an IPv6 VPS is its /64 (rotating inside it changes nothing)."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


@dataclass(frozen=True)
class Sender:
    vps: str
    customer: str | None = None
    plan: str = "default"
    sasl_user: str = ""
    envelope_domain: str = ""
    owned_domains: frozenset[str] = field(default_factory=frozenset)

    @property
    def known(self) -> bool:
        return self.customer is not None

    def subjects(self, message: Message) -> list[Subject]:
        """Every subject a block or a counter could be keyed on for this message."""
        subjects = [Subject("vps", self.vps)]
        if self.customer:
            subjects.append(Subject("customer", self.customer))
        if self.sasl_user:
            subjects.append(Subject("user", self.sasl_user))
        if message.mail_from:
            subjects.append(Subject("sender", message.mail_from.lower()))
        return subjects


def identify(message: Message) -> Sender:
    """The sender of a message as far as the relay can vouch for it."""
    return Sender(
        vps=vps_key(message.client_address),
        sasl_user=message.sasl_user,
        envelope_domain=message.sender_domain,
    )
