"""The spam budget through the real adapter (pymilter's TestCtx) and a real
redis-server: N spam verdicts within W block the VPS, or the customer across its
VPSes, automatically and audited; clean mail and non-content findings do not count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from relaywarden.runtime import Runtime
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

POLICY = """
[plans.default]
messages = ["100/1m"]

[[customers]]
id = "cust-2vps"
networks = ["192.0.2.20/32", "192.0.2.21/32"]
domains = ["two.example"]

[brands]
protected = ["paypal.com"]

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.inventory]
refresh = "1h"

[spam_budget]
spam = 3
window = "10m"
block_for = "2h"
"""

PHISH = b"We noticed unusual activity. Verify your account: https://paypa1-login.example/v\r\n"
CLEAN = b"Your order has shipped and will arrive on Tuesday.\r\n"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY, quarantine=True) as rt:
        yield rt


def send(ip: str, body: bytes, mail_from: str = "service@two.example") -> str:
    ctx = open_ctx(ip)
    if ctx._envfrom(f"<{mail_from}>") != Milter.CONTINUE:
        ctx._close()
        return f"refused at MAIL FROM {ctx._reply[0]}"
    ctx._envrcpt("<buyer@example.org>")
    rc = deliver(ctx, message(mail_from, "PayPal: account limited", body=body))
    ctx._close()
    if rc == Milter.ACCEPT:
        return "held" if getattr(ctx, "_quarantine", None) else "accepted"
    return str(rc)


def test_three_spam_verdicts_block_the_vps(runtime: Runtime) -> None:
    store = runtime.store
    assert isinstance(store, RedisStore)
    assert send("198.51.100.5", CLEAN, "a@vps5.example") == "accepted"  # clean: not counted
    fates = [send("198.51.100.5", PHISH, "a@vps5.example") for _ in range(3)]
    assert fates == ["held"] * 3
    (block,) = store.blocks_for([parse_subject("vps:198.51.100.5")])
    assert block.set_by == "relaywarden" and block.action == "reject"
    assert block.reason == "automatic: 3 spam verdicts within 10m"
    assert block.until is not None and block.until - block.since == 7200
    # Blocked: refused at MAIL FROM, before the body travels, clean or not.
    assert send("198.51.100.5", CLEAN, "a@vps5.example") == "refused at MAIL FROM 550"
    (entry,) = [
        json.loads(fields[b"json"]) for _, fields in store.client.xrevrange(store.keys.audit)
    ]
    assert (entry["action"], entry["target"], entry["via"]) == (
        "block",
        "vps:198.51.100.5",
        "milter",
    )
    assert send("198.51.100.6", CLEAN, "a@vps6.example") == "accepted"  # a neighbour untouched


def test_a_customers_budget_spans_its_vpses(runtime: Runtime) -> None:
    store = runtime.store
    assert isinstance(store, RedisStore)
    assert [send("192.0.2.20", PHISH) for _ in range(2)] == ["held"] * 2
    assert send("192.0.2.21", PHISH) == "held"  # the customer's third, this VPS's first
    assert store.blocks_for([parse_subject("customer:cust-2vps")])
    assert not store.blocks_for([parse_subject("vps:192.0.2.21")])
    assert send("192.0.2.21", CLEAN) == "refused at MAIL FROM 550"
