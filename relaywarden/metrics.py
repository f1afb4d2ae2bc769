"""Prometheus metrics: one registry per process, served when [metrics] listen is set."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram, start_http_server

DECISIONS = Counter(
    "relaywarden_decisions_total", "Decisions by stage and action", ["stage", "action"]
)
FINDINGS = Counter("relaywarden_findings_total", "Findings by check and name", ["check", "name"])
DEPENDENCY_ERRORS = Counter(
    "relaywarden_dependency_errors_total",
    "Redis/DNS failures seen by checks (the fail mode then applied)",
    ["service", "check"],
)
INTERNAL_ERRORS = Counter(
    "relaywarden_internal_errors_total", "Exceptions in milter callbacks (answered 451 4.3.0)"
)
DECISION_SECONDS = Histogram(
    "relaywarden_decision_seconds",
    "Time the engine took for one decision",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
)
OPEN_CONNECTIONS = Gauge("relaywarden_open_connections", "SMTP connections the milter serves")
POLICY_RELOADS = Counter("relaywarden_policy_reloads_total", "Policy reloads", ["result"])
AUTO_BLOCKS = Counter(
    "relaywarden_automatic_blocks_total", "Subjects blocked by escalation, by kind", ["kind"]
)
NOTICE_FAILURES = Counter(
    "relaywarden_notice_failures_total",
    "Automatic-block notices that failed after every retry",
    ["channel"],
)
ESCALATION_DROPPED = Counter(
    "relaywarden_escalation_dropped_total", "Escalation jobs dropped because the queue was full"
)
ESCALATION_QUEUE = Gauge(
    "relaywarden_escalation_queue_depth", "Escalation jobs waiting for the background thread"
)
HELD_MESSAGES = Gauge(
    "relaywarden_held_messages",
    "Messages the quarantine index shows as held on this relay (sampled at scrape, cached 30 s)",
)

BREAKER_STATE = Gauge(
    "relaywarden_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open", ["service"]
)
BREAKER_OPENED = Counter(
    "relaywarden_breaker_opened_total", "Times the circuit breaker opened", ["service"]
)
BREAKER_REJECTED = Counter(
    "relaywarden_breaker_rejected_total",
    "Calls failed fast while the circuit was open (no timeout waited)",
    ["service"],
)

STAGES = ("mail", "rcpt", "eom")
ACTIONS = ("accept", "quarantine", "tempfail", "discard", "reject")
SUBJECT_KINDS = ("vps", "customer", "user", "sender")
NOTICE_CHANNELS = ("webhook", "email")


def initialise(check_names: list[str]) -> None:
    """Create every labelled series at zero, so an alert on rate() or increase()
    sees a 0 -> 1 step instead of a series that appears out of nowhere."""
    for stage in STAGES:
        for action in ACTIONS:
            DECISIONS.labels(stage=stage, action=action)
    for service in ("redis", "dns"):
        for check in check_names:
            DEPENDENCY_ERRORS.labels(service=service, check=check)
    for result in ("ok", "refused"):
        POLICY_RELOADS.labels(result=result)
    for kind in SUBJECT_KINDS:
        AUTO_BLOCKS.labels(kind=kind)
    for channel in NOTICE_CHANNELS:
        NOTICE_FAILURES.labels(channel=channel)
    BREAKER_STATE.labels(service="redis")
    BREAKER_OPENED.labels(service="redis")
    BREAKER_REJECTED.labels(service="redis")


# The children of the per-message metrics, looked up once: prometheus_client's
# labels() validates and locks on every call. Bounded: stages x actions, and the
# checks' finding names.
@lru_cache(maxsize=64)
def decision_seconds(stage: str) -> Histogram:
    return DECISION_SECONDS.labels(stage=stage)


@lru_cache(maxsize=64)
def decisions(stage: str, action: str) -> Counter:
    return DECISIONS.labels(stage=stage, action=action)


@lru_cache(maxsize=1024)
def findings(check: str, name: str) -> Counter:
    return FINDINGS.labels(check=check, name=name)


# With [milter] workers = N, worker i serves its metrics on PORT + i (set at fork).
PORT_OFFSET = 0


def serve(listen: str) -> None:
    """Start the scrape endpoint on HOST:PORT in a daemon thread."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port) + PORT_OFFSET, addr=host.strip("[]") or "127.0.0.1")
