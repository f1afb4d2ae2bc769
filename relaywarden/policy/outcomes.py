"""Policy sections of what the relay learns after and around a message:
delivery outcomes from Postfix's log (`[outcomes]`) and SASL logins used from
too many networks (`[logins]`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from relaywarden.policy.limits import EmailSection, WebhookSection
from relaywarden.policy.types import Duration, Section

ForcedAction = Literal["", "tempfail", "quarantine", "reject"]


class Threshold(Section):
    """cPanel's rule: a share AND a minimum count, both over `[outcomes] window`.

    The share is of all delivery attempts of the subject in the window
    (delivered + deferred + bounced); the count is of this kind alone, so a
    VPS that sent three messages, two of them bounced, is not judged on 67 %.
    """

    share: float = Field(default=0.3, gt=0, le=1)
    min_count: int = Field(default=20, ge=1)
    # What crossing it means at the sender's next MAIL FROM: a score that adds to
    # the others, and/or a forced action ("" = none).
    score: float = Field(default=0.0, ge=0)
    action: ForcedAction = "tempfail"
    # A lower line that only sends a notice (once per window and subject), so the
    # customer can be warned before anything is enforced. None: no warning.
    warn_share: float | None = Field(default=None, gt=0, le=1)
    warn_min_count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _warning_below(self) -> Threshold:
        if (self.warn_share is None) != (self.warn_min_count is None):
            raise ValueError("set both warn_share and warn_min_count, or neither")
        if self.warn_share is not None and self.warn_share > self.share:
            raise ValueError("warn_share must not be above share")
        return self


class CountThreshold(Section):
    """A count alone (authentication failures have no share of anything)."""

    min_count: int = Field(default=20, ge=1)
    score: float = Field(default=0.0, ge=0)
    action: ForcedAction = "tempfail"


class OutcomesSection(Section):
    # Off by default: without a watcher following the log there is nothing to read.
    enabled: bool = False
    # Postfix's log: its maillog_file (postlogd, Postfix >= 3.4) or the syslog
    # file it goes to. `relaywarden watch --log-file` overrides it.
    log_file: str = ""
    # Where a watcher with no stored position begins: the log's current end (an
    # old log is not counted as if it happened now) or its start.
    start_at: Literal["end", "start"] = "end"
    # Run the watcher as a thread of `relaywarden run` (else `relaywarden watch`).
    watch_in_milter: bool = False
    window: Duration = 3600.0
    # How long queue id -> sender identity is kept: longer than Postfix's
    # maximal_queue_lifetime (default 5d), or late bounces go unattributed.
    identity_ttl: Duration = 6 * 86400.0
    # Enhanced status codes that mean "this recipient does not exist".
    unknown_dsn: list[str] = Field(default_factory=lambda: ["5.1.1", "5.1.10", "5.4.4"])
    poll: Duration = 1.0
    batch: int = Field(default=2000, ge=1, le=100_000)
    bounced: Threshold = Threshold(share=0.3, min_count=20)
    unknown_recipients: Threshold = Threshold(share=0.2, min_count=10)
    deferred: Threshold = Threshold(share=0.5, min_count=50, action="", score=2.0)
    auth_failures: CountThreshold = CountThreshold(min_count=20)
    webhook: WebhookSection = WebhookSection()
    email: EmailSection = EmailSection()

    @field_validator("unknown_dsn")
    @classmethod
    def _dsn(cls, values: list[str]) -> list[str]:
        for value in values:
            parts = value.split(".")
            if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] != "5":
                raise ValueError(f"{value!r} is not a permanent enhanced status code like 5.1.1")
        return values

    @model_validator(mode="after")
    def _ttl(self) -> OutcomesSection:
        if self.identity_ttl < 86400:
            raise ValueError("identity_ttl must exceed Postfix's maximal_queue_lifetime (>= 1d)")
        return self


class LoginsSection(Section):
    """A SASL login used from more client networks than a person could be in."""

    enabled: bool = True
    window: Duration = 3600.0
    # Networks are counted at these prefix lengths (an office or a VPS's /64 is one).
    ipv4_prefix: int = Field(default=24, ge=8, le=32)
    ipv6_prefix: int = Field(default=48, ge=16, le=128)
    # More distinct networks than this in the window is the finding.
    max_networks: int = Field(default=10, ge=1, le=1000)
    action: ForcedAction = "tempfail"
    score: float = Field(default=0.0, ge=0)
    # Block the login automatically (subject user:LOGIN) for this long; 0: no block.
    block_for: Duration = 3600.0
    block_action: Literal["tempfail", "reject"] = "tempfail"
    # Also tell the customer, at its inventory `contact` addresses, through the
    # notice email's relay (`[logins.email] relay`), that its login was blocked.
    notify_customer: bool = True
    # Optional MaxMind-format database (GeoLite2-ASN / -Country / -City): adds
    # countries and ASNs to the evidence. None is shipped or downloaded.
    geoip_db: str = ""
    webhook: WebhookSection = WebhookSection()
    email: EmailSection = EmailSection()


class ComplaintsSection(Section):
    """`relaywarden complaints`: the SMTP listener the provider's abuse@ / FBL
    address points at; complaints feed findings like delivery outcomes."""

    # Counted and judged at MAIL FROM only when enabled (the listener runs anyway).
    enabled: bool = False
    listen: str = "127.0.0.1:2525"
    # Reports above this size are refused at DATA (552); ARF reports are small.
    max_size: int = Field(default=2_000_000, ge=10_000, le=50_000_000)
    # Messages accepted per client address per minute; more get 451 4.7.1.
    per_client_per_minute: int = Field(default=120, ge=1)
    # How many complaints (attributed or not) the desk keeps, newest first.
    keep: int = Field(default=10_000, ge=100, le=1_000_000)
    # Complaints over the `[outcomes] window`: a share of the subject's delivered
    # mail in the same window (all complaints when nothing was counted) AND a count.
    threshold: Threshold = Threshold(share=0.01, min_count=3, action="quarantine")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("HOST:PORT to listen on, e.g. '127.0.0.1:2525'")
        return value
