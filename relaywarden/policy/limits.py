"""Plans, rate limits, warm-up, adaptive limits, bursts and escalation: the policy
keys of the rate-limit feature (`[plans.NAME]`, `[limits]`, `[[limits.overrides]]`)."""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from relaywarden.policy.durations import format_duration, parse_duration
from relaywarden.policy.types import Duration, Section, SubjectField

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
UNITS = ("messages", "recipients", "bytes", "unique_recipients", "unique_domains")
Unit = Literal["messages", "recipients", "bytes", "unique_recipients", "unique_domains"]
ScopeKind = Literal["vps", "customer", "user", "sender"]
# A window longer than this would keep counters for weeks: not a rate any more.
MAX_WINDOW = 31 * 86400.0


class Rate(tuple[int, float]):
    """`"30/1m"`: at most 30 in any sliding minute. (limit, window seconds)."""

    __slots__ = ()

    @property
    def limit(self) -> int:
        return self[0]

    @property
    def window(self) -> float:
        return self[1]

    def __str__(self) -> str:
        return f"{self.limit}/{format_duration(self.window)}"


def parse_rate(value: object) -> Rate:
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise ValueError("a rate is a string like '30/1m', '500/1h' or '2000/1d'")
    match = _RATE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a rate; write COUNT/WINDOW, e.g. '30/1m' or '500/1h'")
    window = parse_duration(match.group(2))
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"{value!r}: the window must be between 1s and 31d")
    return Rate((int(match.group(1)), window))


RateField = Annotated[Rate, BeforeValidator(parse_rate)]


class Limits(Section):
    """Rates per unit for one scope. An empty list: no limit on that unit."""

    messages: list[RateField] = Field(default_factory=list)
    recipients: list[RateField] = Field(default_factory=list)
    bytes: list[RateField] = Field(default_factory=list)
    unique_recipients: list[RateField] = Field(default_factory=list)
    unique_domains: list[RateField] = Field(default_factory=list)

    @field_validator(*UNITS)
    @classmethod
    def _distinct_windows(cls, value: list[Rate]) -> list[Rate]:
        windows = [r.window for r in value]
        if len(set(windows)) != len(windows):
            raise ValueError("two rates with the same window: keep the lower one")
        return value

    def rates(self) -> list[tuple[str, Rate]]:
        return [(unit, rate) for unit in UNITS for rate in getattr(self, unit)]

    def overlay(self, other: Limits) -> Limits:
        """These limits with every unit `other` sets replaced by `other`'s rates."""
        return self.model_copy(update={u: getattr(other, u) for u in other.model_fields_set})


class Plan(Limits):
    """The top-level units limit each VPS; the sub-tables the customer's whole
    traffic, each SASL login and each envelope sender (absent: no limit there)."""

    customer: Limits | None = None
    user: Limits | None = None
    sender: Limits | None = None

    def for_scope(self, kind: ScopeKind) -> Limits | None:
        if kind == "vps":
            return Limits(**{u: getattr(self, u) for u in UNITS})
        return getattr(self, kind)  # type: ignore[no-any-return]


# A VPS no inventory knows gets this unless the policy defines `[plans.default]`:
# low, because nobody vouches for it.
BUILTIN_DEFAULT = Plan(
    messages=[parse_rate("10/1m"), parse_rate("100/1h"), parse_rate("500/1d")],
    recipients=[parse_rate("50/1m"), parse_rate("500/1h")],
    unique_recipients=[parse_rate("300/1h")],
)


def _instant(value: object) -> float | None:
    """A TOML date or date-time (or its ISO text) as epoch seconds; UTC if no zone."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("a date like 2026-12-01 or a time like 2026-12-01T00:00:00Z") from None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    else:
        raise ValueError("a date like 2026-12-01 or a time like 2026-12-01T00:00:00Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class WarmupSection(Section):
    # Off by default: on the day RelayWarden is deployed every VPS is "new".
    period: Duration = 0.0
    start_fraction: float = Field(default=0.25, gt=0, le=1)
    # Only VPSes first seen on or after this date warm up: those seen before it
    # (e.g. learnt in shadow mode) are established customers. Empty: every VPS
    # RelayWarden has not seen yet warms up.
    new_after: Annotated[float | None, BeforeValidator(_instant)] = None

    def applies(self, first_seen: float | None, now: float) -> bool:
        """Does a VPS first seen at `first_seen` (None: now) warm up?"""
        if self.period <= 0:
            return False
        seen = now if first_seen is None else first_seen
        return self.new_after is None or seen >= self.new_after


class AdaptiveSection(Section):
    enabled: bool = True
    # Each quarantined / rejected message of a VPS adds this much penalty ...
    quarantine_penalty: float = Field(default=1.0, ge=0)
    reject_penalty: float = Field(default=2.0, ge=0)
    # ... which halves every `half_life` of clean (or no) mail.
    half_life: Duration = 21600.0
    # Limits shrink by this fraction per point of penalty, never below min_factor.
    shrink: float = Field(default=0.1, ge=0, le=1)
    min_factor: float = Field(default=0.25, gt=0, le=1)


class BurstSection(Section):
    enabled: bool = True
    window: Duration = 600.0
    # The baseline is a moving average of the VPS's own rate, time constant:
    baseline_period: Duration = 86400.0
    # A burst: more than `factor` times the baseline over `window`, and more than `floor`.
    factor: float = Field(default=5.0, ge=1)
    floor: int = Field(default=50, ge=1)
    unique_recipients_floor: int = Field(default=100, ge=1)
    unique_domains_floor: int = Field(default=30, ge=1)
    # Each burst finding adds this to the message's score (5 quarantines by default).
    score: float = 5.0


class WebhookSection(Section):
    url: str = ""
    timeout: Duration = 5.0
    attempts: int = Field(default=5, ge=1, le=20)
    backoff: Duration = 1.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL, or empty")
        return value


class EmailSection(Section):
    # Empty: no email. Else the notice goes to these addresses through `relay`.
    to: list[str] = Field(default_factory=list)
    # Empty: relaywarden@ the first [relay] hostname, a sender the relay's own
    # checks accept ("localhost" is no mail domain: it was refused 550 5.1.7).
    sender: str = ""
    relay: str = "127.0.0.1:25"
    timeout: Duration = 10.0
    attempts: int = Field(default=3, ge=1, le=20)
    backoff: Duration = 5.0

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("HOST:PORT of an SMTP server, e.g. '127.0.0.1:25'")
        return value


class EscalationSection(Section):
    enabled: bool = True
    # This many limit hits (or bursts) within `period` block the subject ...
    hits: int = Field(default=10, ge=1)
    period: Duration = 3600.0
    # ... for `block_for`, times `growth` for every earlier automatic block within
    # `memory`, at most `max_block`.
    block_for: Duration = 3600.0
    growth: float = Field(default=4.0, ge=1)
    max_block: Duration = 7 * 86400.0
    memory: Duration = 30 * 86400.0
    # An automatic block defers (451 4.7.1): the client's MTA keeps the mail, and an
    # honest sender that only retried loses nothing. "reject" (5xx) only if you say so.
    action: Literal["reject", "tempfail"] = "tempfail"
    # Count at most one hit per subject per sub-window (period / 10): the retries of
    # one deferred backlog are one episode, not ten hits.
    distinct_hits: bool = True
    webhook: WebhookSection = WebhookSection()
    email: EmailSection = EmailSection()


class ReservationSection(Section):
    """What MAIL FROM reserves for one transaction (admission is check-and-reserve)."""

    # Recipients one message may reserve: Postfix's own smtp_destination_recipient_limit
    # (50), so a Postfix client never meets it; recipients beyond it get 452 4.5.3 and
    # go in the next message. Smaller: more parallel sessions share a recipient limit.
    recipients: int = Field(default=50, ge=1, le=100_000)
    # Bytes one message may reserve when its MAIL FROM declares no SIZE: Postfix's
    # default message_size_limit.
    bytes: int = Field(default=10_240_000, ge=1)
    # A reservation nobody settles (the milter died mid-transaction) stops counting
    # after this long. Longer than a transaction: Postfix's smtpd_timeout (300 s) bounds
    # each command; a transaction that outlives it is still counted at its end.
    lease: Duration = Field(default=600.0, ge=5, le=3600)


class InventorySection(Section):
    # A large inventory: a .csv (id,plan,networks,sasl_users,domains; lists
    # space-separated) or a .toml with [[customers]], relative to the policy file.
    file: str = ""
    # How often a milter re-reads the runtime overrides (`relaywarden inventory set`).
    refresh: Duration = 10.0


class Override(Section):
    subject: SubjectField
    plan: str = ""
    limits: Limits = Limits()

    @field_validator("subject")
    @classmethod
    def _kind(cls, value: SubjectField) -> SubjectField:
        if value.kind not in ("vps", "customer"):
            raise ValueError("an override is for a 'vps:' or a 'customer:' subject")
        return value


class LimitsSection(Section):
    enabled: bool = True
    # Clients never counted or limited: the relay host itself by default, so its
    # own notices (escalation email through the relay) are never held back.
    exempt: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Limits over every customer and VPS together: a ceiling for the whole relay.
    global_: Limits = Field(default=Limits(), alias="global")
    warmup: WarmupSection = WarmupSection()
    adaptive: AdaptiveSection = AdaptiveSection()
    burst: BurstSection = BurstSection()
    escalation: EscalationSection = EscalationSection()
    inventory: InventorySection = InventorySection()
    reservation: ReservationSection = ReservationSection()
    overrides: list[Override] = Field(default_factory=list)

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True
    )

    @field_validator("exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a network: {exc}") from None
        return value

    @property
    def exempt_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(text, strict=False) for text in self.exempt]

    @model_validator(mode="after")
    def _unique_overrides(self) -> LimitsSection:
        subjects = [str(o.subject) for o in self.overrides]
        if len(set(subjects)) != len(subjects):
            raise ValueError("a subject has two overrides")
        return self


def plan_named(plans: dict[str, Plan], name: str) -> Plan | None:
    if name in plans:
        return plans[name]
    return BUILTIN_DEFAULT if name == "default" else None


def check_plans(plans: dict[str, Plan], limits: LimitsSection, used: list[str]) -> None:
    """Every plan a customer or an override names exists (`default` always does)."""
    named = [(f"customers[{n}].plan", p) for n, p in enumerate(used)]
    named += [(f"limits.overrides[{n}].plan", o.plan) for n, o in enumerate(limits.overrides)]
    missing = [
        f"{where}: unknown plan {p!r}" for where, p in named if p and not plan_named(plans, p)
    ]
    if missing:
        raise ValueError("; ".join(missing) + " (define it as [plans.NAME])")
