"""rspamd end to end: Debian's rspamd on loopback (its DNS on the test DNS server,
network modules off), asked over /checkv2 by the milter behind real Postfix.
GTUBE is scored, refused, and counts against the sender's spam budget."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from relaywarden.devstack.dns import DnsServer
from relaywarden.devstack.rspamd import RspamdServer, available
from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not available():
        pytest.fail("rspamd is not installed: run scripts/setup.sh (Debian package rspamd)")
    work = tmp_path_factory.mktemp("rspamd")
    dns = DnsServer(work / "dns")
    scanner = RspamdServer(work / "rspamd", dns.start())
    try:
        url = scanner.start()
        policy = work / "policy.toml"
        policy.write_text(
            f"""
[[customers]]
id = "cust-shop"
networks = ["203.0.113.50/32"]
domains = ["shop.example"]

[checks.sender]
enabled = false

[content.rspamd]
url = "{url}"
timeout = "5s"

[spam_budget]
spam = 2
"""
        )
        with Stack(policy) as running:
            yield running
    finally:
        scanner.stop()
        dns.stop()


def events(stack: Stack, queue_or_ref: str) -> list[dict]:  # type: ignore[type-arg]
    client = redis.Redis.from_url(stack.redis_url)
    rows = [json.loads(f[b"json"]) for _, f in client.xrevrange("rw:events", count=50)]
    return [e for e in rows if queue_or_ref in (e.get("queue_id"), e.get("ref"))]


def test_gtube_is_scored_refused_and_spends_the_spam_budget(stack: Stack) -> None:
    clean = message("orders@shop.example", "Your order", body=b"Your order has shipped.\r\n")
    ok = stack.send("orders@shop.example", ["buyer@example.org"], clean, client="203.0.113.50")
    assert stack.fate(ok).fate == "delivered"

    refusals = []
    for _ in range(2):
        data = message("orders@shop.example", "Test", body=GTUBE)
        result = stack.send(
            "orders@shop.example", ["buyer@example.org"], data, client="203.0.113.50"
        )
        refusals.append((result.code, result.enhanced))
        ref = result.text.rsplit("(ref ", 1)[-1].rstrip(")")
        (event,) = events(stack, ref)
        (hit,) = [f for f in event["findings"] if f["check"] == "rspamd"]
        assert hit["name"] == "rspamd-spam" and hit["evidence"]["score"] >= 15
        assert "GTUBE" in hit["evidence"]["symbols"]
    # rspamd's 15 points are over the relay's reject threshold (10).
    assert refusals == [(550, "5.7.1")] * 2
    # Two spam verdicts ([spam_budget] spam = 2): the VPS is blocked, even for clean mail.
    after = stack.send("orders@shop.example", ["buyer@example.org"], clean, client="203.0.113.50")
    assert (after.code, after.enhanced) == (550, "5.7.1")
    assert "blocked" in after.text.lower()
