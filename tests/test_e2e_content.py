"""Content checks end to end: real Postfix (XCLIENT plays twelve VPSes), the milter
as a process, real redis-server, the devstack's DNS server with its test blocklist
zone, the sink; the abuse team's `relaywarden campaigns`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.stack import Stack
from tests.mail import message

pytestmark = pytest.mark.e2e

# The campaign rule at its defaults ([campaigns] vpses = 4, customers = 3,
# recipients = 200). A sender missing from the inventory is its own customer.
POLICY = """
[plans.default]
messages = ["20/1m"]
recipients = ["20/1m"]

[plans.newsletter]
messages = ["20/1m"]
recipients = ["500/1m"]

[[customers]]
id = "cust-bakery"
plan = "newsletter"
networks = ["192.0.2.10/32"]
domains = ["bakery.example"]

[checks.sender]
enabled = false

# The bakery's mailing list is 250 readers: its plan's burst floor says so.
[limits.burst]
unique_recipients_floor = 300

[[reputation.lists]]
zone = "dbl.rw-test.example"

[brands]
protected = ["paypal.com"]
"""

PRIZE = (
    "Dear {name},\r\n\r\nCongratulations! You have been selected as the winner of our"
    " monthly prize draw: {amount} EUR are waiting for you. To claim your prize visit"
    " https://prize-claim.example/c?id={amount}&utm_source=mail before Friday,"
    " otherwise the prize goes to the next winner in line.\r\n\r\nKind regards,\r\n"
    "The prize team\r\n"
)
NEWS = (
    "Hello {name},\r\n\r\nthis month at the bakery: rye sourdough is back on Tuesdays,"
    " the new cinnamon buns arrive on Friday mornings and our summer opening hours"
    " start next week. See https://bakery.example/m?u={name} for the full programme.\r\n"
)
NAMES = ["John", "Maria", "Ahmed", "Wei", "Olga"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("campaigns") / "policy.toml"
    policy.write_text(POLICY)
    with Stack(policy) as running:
        yield running


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [sys.executable, "-m", "relaywarden", *args]
    argv += ["--config", str(stack.policy), "--redis-url", stack.redis_url]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def prize_copy(stack: Stack, vps: int, copy: int) -> str:
    name = NAMES[copy]
    rcpt = f"{name.lower()}.{vps}@example.org"
    sender = f"promo@vps{vps}.example"
    body = PRIZE.format(name=name, amount=1000 + 7 * vps + copy).encode()
    data = message(sender, "Claim your prize", to=rcpt, body=body)
    result = stack.send(sender, [rcpt], data, client=f"198.51.100.{vps}")
    return stack.fate(result).fate


def test_twelve_vpses_five_copies_each_stopped_after_the_first_copies(stack: Stack) -> None:
    fates = [prize_copy(stack, vps, copy) for copy in range(5) for vps in range(1, 13)]
    # Round robin, as a spread-thin campaign sends: VPS 1 and 2 get their first
    # copy out; the third sender (a third customer) makes it a campaign, and that
    # copy and every later one are held.
    assert fates == ["delivered"] * 2 + ["held"] * 58
    # Each of VPS 3-12 had five copies held: its spam budget ([spam_budget]
    # defaults: 5 within 10m) is spent and it is blocked, whatever it sends next.
    nxt = stack.send(
        "a@vps3.example", ["x@example.org"], message("a@vps3.example"), client="198.51.100.3"
    )
    assert (nxt.code, nxt.enhanced) == (550, "5.7.1")
    assert (
        "automatic: 5 spam verdicts within 10m" in cli(stack, "status", "vps:198.51.100.3").stdout
    )
    listed = cli(stack, "campaigns", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (campaign,) = [c for c in json.loads(listed.stdout) if c["subject"] == "Claim your prize"]
    assert (campaign["vpses"], campaign["customers"], campaign["messages"]) == (12, 12, 60)
    assert campaign["domains"] == "prize-claim.example"

    # Blocked as a whole: a copy from a VPS never seen before is refused outright.
    done = cli(stack, "campaigns", "block", campaign["id"], "--reason", "prize scam", "--as", "eve")
    assert done.returncode == 0, done.stderr
    sender, rcpt = "promo@vps40.example", "new@example.org"
    data = message(
        sender, "Claim your prize", to=rcpt, body=PRIZE.format(name="Li", amount=3).encode()
    )
    refused = stack.send(sender, [rcpt], data, client="198.51.100.40")
    assert (refused.code, refused.enhanced) == (550, "5.7.1")
    assert "blocked bulk campaign" in refused.text
    audit = json.loads(cli(stack, "audit", "--json").stdout)
    assert audit[0]["target"] == f"campaign:{campaign['id']}" and audit[0]["actor"] == "eve"
    released = cli(stack, "campaigns", "release", campaign["id"], "--as", "eve")
    assert released.returncode == 0, released.stderr


def test_newsletter_from_one_customer_within_its_plan_is_delivered_whole(stack: Stack) -> None:
    fates = []
    for batch in range(5):
        rcpts = [f"reader{batch}-{n}@example.org" for n in range(50)]
        body = NEWS.format(name=f"r{batch}").encode()
        data = message("letter@bakery.example", "This month at the bakery", to=rcpts[0], body=body)
        result = stack.send("letter@bakery.example", rcpts, data, client="192.0.2.10")
        fates.append(stack.fate(result).fate)
    # 250 recipients, beyond the campaign rule's 200: one customer's own mailing.
    assert fates == ["delivered"] * 5
    listed = json.loads(cli(stack, "campaigns", "list", "--json").stdout)
    (news,) = [c for c in listed if c["subject"] == "This month at the bakery"]
    assert (news["vpses"], news["customers"], news["recipients"]) == (1, 1, 250)


def test_message_with_a_blocklisted_url_domain_gets_its_finding(stack: Stack) -> None:
    body = b"Your parcel is waiting: https://track.phish-bait.example/p?id=99 pay the fee.\r\n"
    data = message("orders@bakery.example", "Parcel", body=body)
    result = stack.send("orders@bakery.example", ["buyer@example.org"], data, client="192.0.2.10")
    assert stack.fate(result).fate == "held"
    client = redis.Redis.from_url(stack.redis_url)
    events = [json.loads(f[b"json"]) for _, f in client.xrevrange("rw:events", count=20)]
    (event,) = [e for e in events if e.get("queue_id") == result.queue_id]
    (hit,) = [f for f in event["findings"] if f["check"] == "reputation"]
    assert hit["name"] == "dnsbl-url"
    assert hit["evidence"] == {
        "zone": "dbl.rw-test.example",
        "domain": "phish-bait.example",
        "code": "127.0.1.4",
    }


def test_phishing_shaped_message_is_held_with_its_finding(stack: Stack) -> None:
    body = b"We noticed unusual activity. Verify your account: https://paypa1-login.example/v\r\n"
    data = message("service@bakery.example", "PayPal: your account is limited", body=body)
    result = stack.send("service@bakery.example", ["buyer@example.org"], data, client="192.0.2.10")
    assert stack.fate(result).fate == "held"
    client = redis.Redis.from_url(stack.redis_url)
    events = [json.loads(f[b"json"]) for _, f in client.xrevrange("rw:events", count=20)]
    (event,) = [e for e in events if e.get("queue_id") == result.queue_id]
    (hit,) = [f for f in event["findings"] if f["name"] == "phishing-shape"]
    assert hit["evidence"] == {"brand": "paypal.com", "links": ["paypa1-login.example"]}
