"""The provider's customer inventory: who owns which networks, logins and domains."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator

from relaywarden.policy.types import Section

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CustomerEntry(Section):
    id: str
    plan: str = "default"
    networks: list[str] = Field(default_factory=list)
    sasl_users: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    # The customer's own addresses for notices about its account (a stolen login).
    contact: list[str] = Field(default_factory=list, max_length=5)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("letters, digits and _ . : - only, at most 64, not starting with one")
        return value

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            try:
                out.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a network: {exc}") from None
        return out

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: list[str]) -> list[str]:
        from email_validator import EmailNotValidError, validate_email

        out = []
        for text in value:
            try:
                out.append(validate_email(text, check_deliverability=False).normalized)
            except EmailNotValidError as exc:
                raise ValueError(f"{text!r} is not an address: {exc}") from None
        return out

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().rstrip(".") for d in value]

    def parsed_networks(self) -> list[Network]:
        return [ipaddress.ip_network(n) for n in self.networks]
