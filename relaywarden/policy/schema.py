"""The policy file's schema: every key a provider may set, with its default.

`policies/default.toml` documents each key; this module is the authority on
what is valid. The embedded defaults alone give a working relay.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relaywarden.policy.content import (
    CampaignsSection,
    ContentSection,
    ReputationSection,
    SpamBudgetSection,
)
from relaywarden.policy.crosscheck import cross_errors
from relaywarden.policy.desk import QuarantineSection, WebSection
from relaywarden.policy.forgery import (
    BrandsSection,
    DnsSection,
    HeadersCheckSection,
    RelaySection,
    SenderCheckSection,
)
from relaywarden.policy.inventory import CustomerEntry
from relaywarden.policy.limits import LimitsSection, Plan
from relaywarden.policy.outcomes import ComplaintsSection, LoginsSection, OutcomesSection
from relaywarden.policy.trace import TraceSection
from relaywarden.policy.types import Duration, Section, SubjectField
from relaywarden.subjects import Subject, canonical_vps
from relaywarden.verdict import Action

_SOCKET = re.compile(r"^(inet:\d{1,5}(@\S+)?|inet6:\d{1,5}(@\S+)?|unix:/\S+|local:/\S+)$")

FailMode = Literal["open", "tempfail"]


class MilterSection(Section):
    listen: str = "inet:9900@127.0.0.1"
    name: str = "relaywarden"
    io_timeout: Duration = 30.0
    shutdown_grace: Duration = 10.0
    socket_mode: str = "0660"
    # Owner and group of a unix socket (names or numbers; empty: the process's).
    # Postfix's smtpd opens it as user postfix with only group postfix: use
    # socket_group = "postfix" and give the service that group.
    socket_owner: str = ""
    socket_group: str = ""
    # Mode of the socket's directory when the milter has to create it.
    socket_dir_mode: str = "0750"
    # "enforce" applies verdicts; "shadow" computes, logs and counts them but
    # accepts every message and blocks nothing automatically (a rollout).
    mode: Literal["enforce", "shadow"] = "enforce"
    # Milter processes sharing one listening socket (one GIL each): a number, or
    # "auto" for one per CPU the process may run on.
    workers: int | Literal["auto"] = Field(default=1)
    # Each milter process kept on one CPU: worker i on the i-th CPU it may run on,
    # or on the i-th of a list given here (round robin). libmilter runs a thread
    # per connection and they take turns holding the GIL; on one core a hand-over
    # is a local wake-up, across cores a cross-CPU one with the interpreter's
    # state following it (bench.paired: about 28% less CPU per message).
    pin_cpus: StrictBool | list[StrictInt] = True

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError('a number of processes from 1 to 256, or "auto"')
        return value

    @field_validator("pin_cpus")
    @classmethod
    def _pin_cpus(cls, value: bool | list[int]) -> bool | list[int]:
        if isinstance(value, list) and (not value or any(not 0 <= c < 4096 for c in value)):
            raise ValueError("true, false, or a non-empty list of CPU numbers such as [2, 3]")
        return value

    def worker_count(self) -> int:
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not _SOCKET.match(value):
            raise ValueError(
                "use libmilter syntax: 'inet:PORT@HOST', 'inet6:PORT@HOST' or 'unix:/path'"
            )
        return value

    @field_validator("socket_mode", "socket_dir_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError("an octal file mode such as '0660'")
        return value

    @field_validator("socket_owner", "socket_group")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?", value):
            raise ValueError("a user or group name, or a number")
        return value


class RedisSection(Section):
    url: str = "redis://127.0.0.1:6379/0"
    timeout: Duration = 0.5
    key_prefix: str = "rw"
    # What a message gets when Redis cannot be reached: "open" lets it through
    # unchecked by the counters (logged and counted), "tempfail" answers 451 4.3.0.
    on_error: FailMode = "tempfail"
    events_maxlen: int = Field(default=100_000, ge=100)
    # Circuit breaker: after this many connection errors or timeouts in a row,
    # Redis calls fail at once (fail mode applies) for breaker_interval, then one
    # probe is let through. "0s" turns the breaker off.
    breaker_failures: int = Field(default=1, ge=1, le=100)
    breaker_interval: Duration = 2.0
    # Redis Cluster: `cluster = true` makes `url` (redis://HOST:PORT) one seed node
    # and `nodes` more of them; the same as url = "redis+cluster://HOST:PORT,...".
    cluster: bool = False
    nodes: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        schemes = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
        if not value.startswith(schemes):
            raise ValueError(
                "a Redis URL starts with redis://, rediss://, unix://, "
                "redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE or "
                "redis+cluster://HOST:PORT[,HOST:PORT]"
            )
        from relaywarden.redisurl import parse_cluster_url, parse_sentinel_url

        if value.startswith("redis+sentinel://"):
            parse_sentinel_url(value)  # ValueError names what is wrong
        if value.startswith("redis+cluster://"):
            parse_cluster_url(value)
        return value

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: list[str]) -> list[str]:
        from relaywarden.redisurl import parse_cluster_url

        for node in value:
            parse_cluster_url(f"redis+cluster://{node}")
        return value

    @model_validator(mode="after")
    def _cluster(self) -> RedisSection:
        if self.nodes and not self.cluster:
            raise ValueError("nodes: seed nodes are for a Redis Cluster: set cluster = true")
        _ = self.client_url  # ValueError names what is wrong
        return self

    @property
    def client_url(self) -> str:
        """The URL clients connect to: `cluster = true` is spelled as the one
        redis+cluster:// URL (url's HOST:PORT, then `nodes`)."""
        from relaywarden.redisurl import CLUSTER_SCHEME, parse_cluster_url

        if not self.cluster or self.url.startswith(CLUSTER_SCHEME):
            return self.url
        if not self.url.startswith("redis://"):
            raise ValueError("cluster = true: url must be redis://HOST:PORT (a seed node)")
        seed = self.url.removeprefix("redis://").rstrip("/")
        url = CLUSTER_SCHEME + ",".join([seed.removesuffix("/0"), *self.nodes])
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            raise ValueError(f"cluster = true: url: {exc}") from None
        return url

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", value):
            raise ValueError("letters, digits, '_', '.', '-' only (1 to 32)")
        return value


class ScoringSection(Section):
    """Findings add up; the total maps to an action at these thresholds."""

    quarantine: float = 5.0
    tempfail: float | None = None
    reject: float = 10.0

    @model_validator(mode="after")
    def _ordered(self) -> ScoringSection:
        if self.reject < self.quarantine:
            raise ValueError("reject threshold must not be below the quarantine threshold")
        return self

    def action_for(self, score: float) -> Action:
        if score >= self.reject:
            return Action.REJECT
        if self.tempfail is not None and score >= self.tempfail:
            return Action.TEMPFAIL
        if score >= self.quarantine:
            return Action.QUARANTINE
        return Action.ACCEPT


class BlockEntry(Section):
    subject: SubjectField
    action: Literal["reject", "tempfail", "quarantine", "discard"] = "reject"
    reason: str = Field(default="blocked by policy", max_length=200)


class AddressCheckSection(Section):
    enabled: bool = True
    # From, Sender and Reply-To longer than this are refused unparsed
    # (oversized-address-header): no honest From needs more, and the parse
    # of every check hangs on it.
    max_header_bytes: int = Field(default=4096, ge=256, le=65536)


class ChecksSection(Section):
    addresses: AddressCheckSection = AddressCheckSection()
    headers: HeadersCheckSection = HeadersCheckSection()
    sender: SenderCheckSection = SenderCheckSection()


class LogSection(Section):
    # Envelope and header addresses are personal data: an operator opts in.
    addresses: bool = True
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSection(Section):
    # Where Prometheus scrapes; empty disables the endpoint.
    listen: str = ""


class IdentitySection(Section):
    # An IPv6 VPS is keyed by this prefix: rotating inside it escapes nothing.
    ipv6_prefix: int = Field(default=64, ge=32, le=128)


class Policy(Section):
    milter: MilterSection = MilterSection()
    redis: RedisSection = RedisSection()
    scoring: ScoringSection = ScoringSection()
    blocks: list[BlockEntry] = Field(default_factory=list)
    customers: list[CustomerEntry] = Field(default_factory=list)
    checks: ChecksSection = ChecksSection()
    log: LogSection = LogSection()
    metrics: MetricsSection = MetricsSection()
    identity: IdentitySection = IdentitySection()
    plans: dict[str, Plan] = Field(default_factory=dict)
    limits: LimitsSection = LimitsSection()
    relay: RelaySection = RelaySection()
    dns: DnsSection = DnsSection()
    brands: BrandsSection = BrandsSection()
    quarantine: QuarantineSection = QuarantineSection()
    web: WebSection = WebSection()
    outcomes: OutcomesSection = OutcomesSection()
    logins: LoginsSection = LoginsSection()
    complaints: ComplaintsSection = ComplaintsSection()
    trace: TraceSection = TraceSection()
    content: ContentSection = ContentSection()
    campaigns: CampaignsSection = CampaignsSection()
    reputation: ReputationSection = ReputationSection()
    spam_budget: SpamBudgetSection = SpamBudgetSection()

    @model_validator(mode="after")
    def _canonical_blocks(self) -> Policy:
        """`vps:` blocks keyed as the milter keys a VPS, with this policy's IPv6 prefix."""
        prefix = self.identity.ipv6_prefix
        for n, entry in enumerate(self.blocks):
            if entry.subject.kind == "vps":
                value = canonical_vps(entry.subject.value, prefix)
                self.blocks[n] = entry.model_copy(update={"subject": Subject("vps", value)})
        return self

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Policy:
        # The loader runs these on the raw file (to report them in the same pass
        # as per-key errors) and says so; a policy built in code gets them here.
        if info.context and info.context.get("cross_checked"):
            return self
        errors = cross_errors(self.model_dump())
        if errors:
            raise ValueError("; ".join(f"{where}: {reason}" for where, reason in errors))
        return self
