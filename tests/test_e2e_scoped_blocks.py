"""An automatic `sender:` block covers the customer that earned it, end to end: real
Postfix (XCLIENT plays two customers' VPSes), real redis-server, the milter as a
process (its own escalation thread), the sink, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.stack import Stack
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject
from tests.mail import message

pytestmark = pytest.mark.e2e
RCPT = ["buyer@example.org"]
VPS_A = "203.0.113.71"
VPS_B = "198.51.100.71"
VICTIM = "victim@shared.example"
SCOPED = f"customer:cust-a/sender:{VICTIM}"
POLICY = """
[plans.shared]
messages = ["100/1h"]

[plans.shared.sender]
messages = ["2/1h"]

[[customers]]
id = "cust-a"
plan = "shared"
networks = ["203.0.113.0/24"]

[[customers]]
id = "cust-b"
plan = "shared"
networks = ["198.51.100.0/24"]

[checks.sender]
enabled = false

[limits.escalation]
hits = 3
block_for = "1h"
# The test's hits come within seconds: count each.
distinct_hits = false
# 550, so the block is told apart from the sender limit's own 451.
action = "reject"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("scoped")
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    running = Stack(policy).start()
    yield running
    running.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    argv = [sys.executable, "-m", "relaywarden", *args]
    argv += ["--config", str(stack.policy), "--redis-url", stack.redis_url]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def send(stack: Stack, client: str) -> tuple[int, str]:
    result = stack.send(VICTIM, RCPT, message(VICTIM, "hello"), client=client)
    return result.code, result.enhanced


def test_customer_a_earns_a_sender_block_customer_b_still_sends_as_that_address(
    stack: Stack,
) -> None:
    first = [send(stack, VPS_A) for _ in range(5)]
    assert [code for code, _ in first] == [250, 250, 451, 451, 451]  # 2/1h, then 3 hits
    store = RedisStore(redis.Redis.from_url(stack.redis_url), "rw")
    poll_until(lambda: bool(store.blocks_for([parse_subject(SCOPED)])), 30, "the automatic block")
    # Customer B, the same address through the same relay: delivered.
    b = stack.send(VICTIM, RCPT, message(VICTIM, "from B"), client=VPS_B)
    assert stack.fate(b).fate == "delivered"
    # Customer A stays blocked as that sender.
    assert send(stack, VPS_A) == (550, "5.7.1")

    listed = cli(stack, "blocks", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["subject"], row["covers"], row["set_by"]) == (
        SCOPED,
        "customer:cust-a",
        "relaywarden",
    )

    lifted = cli(stack, "unblock", SCOPED, "--reason", "cleaned up", "--as", "tester")
    assert lifted.returncode == 0 and "unblocked" in lifted.stdout, lifted.stderr
    trail = cli(stack, "audit", "--json")
    assert trail.returncode == 0, trail.stderr
    targets = [(e["action"], e["target"]) for e in json.loads(trail.stdout)]
    assert ("block", SCOPED) in targets and ("unblock", SCOPED) in targets
    # Lifted: A is back to its sender limit (a deferral), not the block.
    assert send(stack, VPS_A) == (451, "4.7.1")
