"""Policy sections of the abuse team's desk: the quarantine index and the web page."""

from __future__ import annotations

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
    # Postfix's configuration directory (postsuper/postqueue/postcat -c DIR) and
    # where those commands live.
    postfix_config_dir: str = "/etc/postfix"
    postfix_bin_dir: str = "/usr/sbin"
    command_timeout: Duration = 30.0
    # Apply release/delete actions queued for this relay inside `relaywarden run`
    # (it then needs the right to run postsuper); else run `relaywarden agent`.
    agent: bool = False

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


class WebSection(Section):
    listen: str = "127.0.0.1:8025"
    users: list[WebUser] = Field(default_factory=list)
    session_lifetime: Duration = 8 * 3600.0
    # Failed logins allowed per user name and per client address in login_window.
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_window: Duration = 900.0
    # Mark the session cookie Secure; turn on when the page is served over HTTPS.
    secure_cookie: bool = False

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not _LISTEN.match(value):
            raise ValueError("HOST:PORT, e.g. '127.0.0.1:8025'")
        return value

    @model_validator(mode="after")
    def _unique(self) -> WebSection:
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("a web user name is listed twice")
        return self

    def user(self, name: str) -> WebUser | None:
        return next((u for u in self.users if u.name == name), None)
