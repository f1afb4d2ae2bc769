"""Metrics an operator alerts on: every series exists at zero from the start; an
automatic block and a failed notice are counted; the escalation queue depth and
the held-message count are sampled; the automatic-block log line is flat JSON
with ISO times."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from relaywarden import metrics
from relaywarden.daemon.gauges import Cached
from relaywarden.decisionlog import JsonFormatter
from relaywarden.devstack.procs import free_port, poll_until
from relaywarden.errors import StoreError
from relaywarden.limits import escalation
from relaywarden.policy import policy_from_dict
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject

ROOT = Path(__file__).resolve().parents[1]


def test_every_series_is_exported_at_zero_from_the_start(tmp_path: Path) -> None:
    port = free_port()
    policy = tmp_path / "p.toml"
    policy.write_text(
        f'[redis]\nurl = "redis://127.0.0.1:1/0"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaywarden", "run", "--config", str(policy),
         "--listen", f"inet:{free_port()}@127.0.0.1"],
        stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        text = ""

        def scraped() -> bool:
            nonlocal text
            try:
                text = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                    .read()
                    .decode()
                )
            except OSError:
                return False
            return True

        poll_until(scraped, 20, "the metrics endpoint")
    finally:
        proc.terminate()
        proc.wait(15)
    for series in (
        'relaywarden_automatic_blocks_total{kind="vps"} 0.0',
        'relaywarden_automatic_blocks_total{kind="customer"} 0.0',
        'relaywarden_notice_failures_total{channel="webhook"} 0.0',
        'relaywarden_notice_failures_total{channel="email"} 0.0',
        "relaywarden_escalation_queue_depth 0.0",
        "relaywarden_escalation_dropped_total 0.0",
        'relaywarden_decisions_total{action="reject",stage="mail"} 0.0',
        'relaywarden_dependency_errors_total{check="limits.mail",service="redis"} 0.0',
        'relaywarden_policy_reloads_total{result="refused"} 0.0',
        "relaywarden_held_messages NaN",  # Redis is down: unknown, not a false 0
    ):
        assert series in text, series


def value(counter: object, **labels: str) -> float:
    return float(counter.labels(**labels)._value.get())  # type: ignore[attr-defined]


def test_automatic_block_is_counted_logged_flat_and_a_failed_notice_counted(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_from_dict(
        {"limits": {"escalation": {"webhook": {"url": "http://127.0.0.1:1/hook", "attempts": 1}}}}
    )
    subject = parse_subject("vps:203.0.113.7")
    before_blocks = value(metrics.AUTO_BLOCKS, kind="vps")
    before_failures = value(metrics.NOTICE_FAILURES, channel="webhook")
    worker = escalation.Escalator()
    # The subject's state hash holds the hits that earned the block (escalation
    # re-checks them when it runs): 10 in the current sub-window of the hour.
    bucket = int(redis_store.client.time()[0]) // 360
    redis_store.client.hset("rwtest:state:x", f"h3600:{bucket % 11}", f"{bucket}:10")
    with caplog.at_level(logging.WARNING, logger="relaywarden.escalation"):
        worker.submit(escalation.Job(redis_store, policy, subject, "rwtest:state:x"))
        worker.jobs.join()
        worker.notices.join()  # notices have their own queue
    assert value(metrics.AUTO_BLOCKS, kind="vps") == before_blocks + 1
    assert value(metrics.NOTICE_FAILURES, channel="webhook") == before_failures + 1
    record = next(
        r for r in caplog.records if getattr(r, "fields", {}).get("event") == "auto-block"
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["subject"] == "vps:203.0.113.7" and line["message"].startswith("automatic block of")
    assert isinstance(line["evidence"], dict)  # an object in the line, not a JSON string
    assert line["since"].endswith("Z") and "T" in line["since"]  # ISO 8601, not an epoch float
    assert line["until"].endswith("Z")


def test_escalation_queue_depth_and_drops() -> None:
    worker = escalation.Escalator(maxsize=1)
    worker._thread = type("Busy", (), {"is_alive": lambda self: True})()  # type: ignore[assignment]
    policy = policy_from_dict({})
    job = escalation.Job(None, policy, parse_subject("vps:192.0.2.1"), "k")  # type: ignore[arg-type]
    dropped = metrics.ESCALATION_DROPPED._value.get()
    worker.submit(job)
    worker.submit(job)
    assert worker.jobs.qsize() == 1
    assert metrics.ESCALATION_DROPPED._value.get() == dropped + 1


def test_cached_gauge_reads_at_most_once_per_interval_and_is_nan_when_redis_fails() -> None:
    now = [0.0]
    reads: list[int] = []

    def read() -> float:
        reads.append(1)
        if len(reads) == 3:
            raise StoreError("redis down")
        return float(len(reads))

    gauge = Cached(read, 30, clock=lambda: now[0])
    assert gauge() == 1 and gauge() == 1 and len(reads) == 1
    now[0] = 30
    assert gauge() == 2
    now[0] = 60
    assert math.isnan(gauge())


def test_shadow_mode_never_blocks_automatically(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_from_dict({"milter": {"mode": "shadow"}})
    subject = parse_subject("vps:203.0.113.9")
    with caplog.at_level(logging.WARNING, logger="relaywarden.escalation"):
        assert escalation.escalate(escalation.Job(redis_store, policy, subject, "k")) is None
    assert redis_store.blocks_for([subject]) == []
    assert "shadow mode: would block vps:203.0.113.9" in caplog.text
