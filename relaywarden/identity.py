"""Who sent a message: customer, plan, VPS, SASL user, sender domain.

Only what the relay itself observed decides identity (the client address Postfix
saw and the SASL login it verified). Headers and HELO are the customer's words
and never choose whose limits apply.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from relaywarden.message import IPAddress, Message
from relaywarden.ownership import EMPTY as NO_OWNERS
from relaywarden.ownership import DomainOwners, owners_for
from relaywarden.policy.inventory import CustomerEntry, Network
from relaywarden.returnpath import sender_key
from relaywarden.subjects import Subject, fold_login

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
    contact: tuple[str, ...] = ()  # the customer's addresses for notices
    # Every customer's domains (the provider-wide reverse index), for the sender check.
    domain_owners: DomainOwners = field(default=NO_OWNERS, compare=False, repr=False)

    @property
    def known(self) -> bool:
        return self.customer is not None

    @property
    def owner(self) -> Subject:
        """Whose mail this is: the customer, or the VPS if it is in no inventory.
        Its hash tag holds the sender's counters; an automatic `sender:` block is
        scoped to it."""
        return Subject("customer", self.customer) if self.customer else Subject("vps", self.vps)

    def subjects(self, message: Message) -> list[Subject]:
        """Every subject a block or a counter could be keyed on for this message
        (a sender twice: relay-wide, and scoped to this sender's owner)."""
        subjects = [Subject("vps", self.vps)]
        if self.customer:
            subjects.append(Subject("customer", self.customer))
        if self.sasl_user:
            subjects.append(Subject("user", self.sasl_user))
        if message.mail_from:
            sender = sender_key(message.mail_from)
            subjects.append(Subject("sender", sender))
            subjects.append(Subject("sender", sender, within=self.owner))
        return subjects


class Inventory:
    """Customers by network (longest prefix wins) and by SASL login.

    The SASL login the relay verified wins over the address: a customer may send
    from anywhere with its own credentials, and a login must not be usable to
    borrow another customer's limits by sending from that customer's network.
    """

    def __init__(self, customers: list[CustomerEntry]) -> None:
        self.customers = {c.id: c for c in customers}
        self._by_user = {fold_login(u): c for c in customers for u in c.sasl_users}
        nets: list[tuple[Network, CustomerEntry]] = [
            (net, c) for c in customers for net in c.parsed_networks()
        ]
        # Longest prefix first, so the first match is the most specific.
        self._by_net = sorted(nets, key=lambda item: item[0].prefixlen, reverse=True)

    def lookup(self, address: IPAddress | None, sasl_user: str) -> CustomerEntry | None:
        login = fold_login(sasl_user)
        if login and login in self._by_user:
            return self._by_user[login]
        if address is None:
            return None
        for net, customer in self._by_net:
            if address.version == net.version and address in net:
                return customer
        return None


EMPTY = Inventory([])


def identify(
    message: Message, inventory: Inventory = EMPTY, ipv6_prefix: int = DEFAULT_IPV6_PREFIX
) -> Sender:
    """The sender of a message as far as the relay can vouch for it."""
    customer = inventory.lookup(message.client_address, message.sasl_user)
    return Sender(
        vps=vps_key(message.client_address, ipv6_prefix),
        customer=customer.id if customer else None,
        plan=customer.plan if customer else "default",
        sasl_user=fold_login(message.sasl_user),
        envelope_domain=message.sender_domain,
        owned_domains=frozenset(customer.domains) if customer else frozenset(),
        contact=tuple(customer.contact) if customer else (),
        domain_owners=owners_for(inventory.customers),
    )
