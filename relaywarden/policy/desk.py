"""Policy sections of the abuse team's desk: the quarantine index and the web page."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Literal

from pydantic import Field, field_validator, model_validator

from relaywarden.policy.types import Duration, Section

_RELAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


class QuarantineSection(Section):
    # The name this relay files its held messages under. Several relays share one
    # Redis and a queue id is only unique on its own relay; "" = the host name.
    relay_name: str = ""
    # How long an index entry is kept (the message itself stays in Postfix's hold
    # queue, whose own lifetime is Postfix's maximal_queue_lifetime).
    retention: Duration = 14 * 86400.0
    # Bounds on what one entry keeps, so a hostile message cannot bloat Redis.
    max_recipients: int = Field(default=50, ge=1, le=1000)
    max_text: int = Field(default=200, ge=20, le=2000)
    # Size of the decoded plain-text preview of a held message, in characters.
    preview_chars: int = Field(default=8000, ge=200, le=200_000)
    # At most this much of a held message is parsed for its preview, and the
    # parsing (in a worker process) is stopped after preview_timeout.
    preview_max_bytes: int = Field(default=1 << 20, ge=64 * 1024, le=64 << 20)
    preview_timeout: Duration = 5.0
    # Postfix's configuration directory (postsuper/postqueue/postcat -c DIR) and
    # where those commands live.
    postfix_config_dir: str = "/etc/postfix"
    postfix_bin_dir: str = "/usr/sbin"
    command_timeout: Duration = 30.0
    # Apply release/delete actions queued for this relay inside `relaywarden run`
    # (it then needs the right to run postsuper); else run `relaywarden agent`.
    agent: bool = False
    # How often the agent (thread or `relaywarden agent`) runs `quarantine scan`:
    # held messages the index does not know are filed, vanished ones marked gone.
    # 0 = never.
    scan_interval: Duration = 900.0

    @field_validator("relay_name")
    @classmethod
    def _relay(cls, value: str) -> str:
        if value and not _RELAY_NAME.match(value):
            raise ValueError("a host name: letters, digits, '.', '-'")
        return value

    @field_validator("postfix_config_dir", "postfix_bin_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("an absolute directory path")
        return value

    @property
    def relay(self) -> str:
        return self.relay_name or socket.gethostname()


class WebUser(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["viewer", "operator"] = "viewer"
    # An argon2 hash from `relaywarden web hash-password`; never a password.
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")


class ServiceAccount(Section):
    """Automation using the JSON API with `Authorization: Bearer TOKEN` (no CSRF,
    no cookie); every action it takes is audited under its name, via "api"."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["viewer", "operator"] = "viewer"
    # SHA-256 (hex) of the token, from `relaywarden web new-token`; never the token.
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class WebSection(Section):
    listen: str = "127.0.0.1:8025"
    users: list[WebUser] = Field(default_factory=list)
    service_accounts: list[ServiceAccount] = Field(default_factory=list)
    session_lifetime: Duration = 8 * 3600.0
    # A session unused this long ends (each request pushes it out again).
    session_idle: Duration = 1800.0
    # Login attempts allowed per (user name, client address) in login_window, and
    # ten times as many per address across all names.
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_window: Duration = 900.0
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks).
    trusted_proxies: list[str] = Field(default_factory=list)
    # Host header values served; anything else gets 400. The listen host and
    # loopback names are always allowed.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Largest request body accepted (forms and API); larger ones get 413 unread.
    max_body: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    # Mark the session cookie Secure; turn on when the page is served over HTTPS.
    secure_cookie: bool = False

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not an address or network") from None
        return value

    @property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(t, strict=False) for t in self.trusted_proxies]

    @property
    def hosts(self) -> set[str]:
        """Host names the desk answers to (lower case, without port or brackets)."""
        listen_host = self.listen.rpartition(":")[0].strip("[]").lower()
        return {"localhost", "127.0.0.1", "::1", listen_host} | {
            h.lower().strip("[]") for h in self.allowed_hosts
        }

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not _LISTEN.match(value):
            raise ValueError("HOST:PORT, e.g. '127.0.0.1:8025'")
        return value

    @model_validator(mode="after")
    def _unique(self) -> WebSection:
        names = [u.name for u in self.users] + [a.name for a in self.service_accounts]
        if len(names) != len(set(names)):
            raise ValueError("a web user or service account name is listed twice")
        return self

    def user(self, name: str) -> WebUser | None:
        return next((u for u in self.users if u.name == name), None)
