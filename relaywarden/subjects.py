"""Subjects: who a block, a status query or a counter is about.

Written as `kind:value`. The same syntax serves static blocks in the policy, the
`block`/`unblock`/`status` commands and the web page, so an abuse analyst can
copy a subject from one to the other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from relaywarden.returnpath import sender_key

SubjectKind = Literal["network", "vps", "customer", "user", "sender", "domain"]
KINDS: tuple[SubjectKind, ...] = ("network", "vps", "customer", "user", "sender", "domain")
MAX_VALUE = 320  # the longest valid mailbox; anything longer is not a real subject


def fold_login(login: str) -> str:
    """SASL logins compare case-insensitively (`Bob` and `bob` are one login):
    folded the same way in the inventory, the scopes and `user:` blocks."""
    return login.strip().casefold()


class SubjectError(ValueError):
    pass


# A `sender:` subject may be scoped to the customer (or, for a VPS in no inventory,
# the VPS) whose mail it covers: `customer:ID/sender:ADDRESS`. Automatic blocks
# are: a customer's hits never block another customer's use of the same address.
SCOPED = "/sender:"
SCOPE_KINDS = ("customer", "vps")


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    value: str
    within: Subject | None = None  # sender: only: the customer or VPS it is scoped to

    def __str__(self) -> str:
        text = f"{self.kind}:{self.value}"
        return f"{self.within}/{text}" if self.within is not None else text

    @property
    def relay_wide(self) -> Subject:
        """The subject without its scope (`sender:ADDRESS`)."""
        return Subject(self.kind, self.value) if self.within is not None else self

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.value, strict=False)


def canonical_vps(value: str, ipv6_prefix: int | None = None) -> str:
    """A `vps:` value as the milter keys a VPS (identity.vps_key): an IPv4 address,
    or the IPv6 /`ipv6_prefix` holding the address or network given, in any case
    or notation. None: validated and kept as narrow as written (stored records).
    A range wider than one VPS is refused: that is what `network:` is for."""
    text = value.strip().removeprefix("IPv6:").removeprefix("ipv6:").strip("[]")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise SubjectError(f"vps:{value} is not an IP address: {exc}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.ip_network(mapped)
    if isinstance(net, ipaddress.IPv4Network):
        if net.prefixlen != 32:
            raise SubjectError(
                f"vps:{value} is a range; a vps: subject is one IPv4 address (use network:)"
            )
        return str(net.network_address)
    if ipv6_prefix is None:
        return str(net)
    if net.prefixlen < ipv6_prefix:
        raise SubjectError(
            f"vps:{value} is wider than one VPS (an IPv6 /{ipv6_prefix}); use network:"
        )
    return str(ipaddress.IPv6Network((net.network_address, ipv6_prefix), strict=False))


def parse_subject(text: str, ipv6_prefix: int | None = None) -> Subject:
    """`kind:value`, canonical: where an operator types one (CLI, web, API, policy
    file) pass the policy's `[identity] ipv6_prefix`, so `vps:` means what the
    milter keys. `customer:ID/sender:ADDRESS` (or `vps:ADDR/sender:ADDRESS`) is a
    sender scoped to that customer's (VPS's) mail."""
    head, sep, tail = text.strip().partition(SCOPED)
    if sep and head.partition(":")[0] in SCOPE_KINDS:
        # The scope's value (a customer id, an IP network) never holds "/sender:".
        owner = parse_subject(head, ipv6_prefix)
        sender = parse_subject("sender:" + tail)
        return Subject("sender", sender.value, within=owner)
    kind, sep, value = text.strip().partition(":")
    if not sep or kind not in KINDS:
        raise SubjectError(f"subject {text!r} must be one of {', '.join(k + ':…' for k in KINDS)}")
    value = value.strip()
    if not value:
        raise SubjectError(f"subject {text!r} has no value after '{kind}:'")
    if len(value) > MAX_VALUE or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise SubjectError(f"subject {text!r} is too long or holds control characters")
    if kind == "network":
        try:
            value = str(ipaddress.ip_network(value.strip("[]"), strict=False))
        except ValueError as exc:
            raise SubjectError(f"subject {text!r}: {exc}") from exc
    if kind == "vps":
        value = canonical_vps(value, ipv6_prefix)
    if kind == "user":
        value = fold_login(value)
    if kind == "sender":
        value = sender_key(value)  # VERP, SRS, BATV, +tag: the sender they stand for
    if kind == "domain":
        value = value.lower()
        value = value.rstrip(".")
    return Subject(kind, value)
