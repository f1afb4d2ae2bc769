"""The `[trace]` section: the keys that sign the relay's trace token and the header
that carries it (relaywarden/trace/)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from relaywarden.policy.types import Duration, Section

_KEY_ID = re.compile(r"[A-Za-z0-9]{1,8}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_RELAY = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
MIN_SECRET_CHARS = 32


class TraceKey(Section):
    # Short: the id travels in every token and picks the key that verifies it.
    id: str
    # At least 32 characters of randomness, e.g. `openssl rand -base64 33`.
    secret: str = Field(repr=False)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _KEY_ID.fullmatch(value):
            raise ValueError("1 to 8 letters or digits")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(value) < MIN_SECRET_CHARS or len(set(value)) < 8:
            raise ValueError(f"at least {MIN_SECRET_CHARS} random characters")
        return value


class TraceSection(Section):
    # The header stamped on every message the relay passes; a customer's header of
    # the same name is removed first, so the only one left is ours.
    header: str = "X-RelayWarden-Trace"
    # The relay's name inside the token; empty: this host's name.
    relay: str = ""
    # Every key listed verifies; `sign_with` (default: the first) signs. Rotate by
    # adding the new key, signing with it, and dropping the old one once the
    # tokens it signed no longer matter (complaints arrive for weeks).
    keys: list[TraceKey] = Field(default_factory=list)
    sign_with: str = ""
    # How long `relaywarden trace` can still name a token's customer and decision.
    retention: Duration = 90 * 86400.0

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("a header field name: letters, digits and '-'")
        return value

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str) -> str:
        if value and not _RELAY.fullmatch(value):
            raise ValueError("a host name of at most 63 characters")
        return value

    @model_validator(mode="after")
    def _keys(self) -> TraceSection:
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("trace key ids must be unique")
        if self.sign_with and self.sign_with not in ids:
            raise ValueError(f"sign_with {self.sign_with!r} is not among the keys")
        return self

    @property
    def signing_key(self) -> TraceKey | None:
        if not self.keys:
            return None
        wanted = self.sign_with or self.keys[0].id
        return next(k for k in self.keys if k.id == wanted)
