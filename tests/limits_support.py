"""Helpers shared by the rate-limit tests: a real redis-server and a way to drive
the engine through whole transactions the way the milter adapter does."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from relaywarden import engine
from relaywarden.checks import Check, Stage, blocks, limits
from relaywarden.decisionlog import decision_fields
from relaywarden.errors import StoreError
from relaywarden.identity import Inventory, identify
from relaywarden.message import Message, normalise_ip
from relaywarden.policy import Policy
from relaywarden.store import Outcome, RedisStore, is_cluster
from relaywarden.verdict import Action, Verdict

# The limit path alone: the other checks (headers, senders) would add findings of
# their own to these bare test messages, and findings shrink a VPS's limits.
LIMIT_CHECKS = (limits.MAIL, blocks.CHECK, limits.RCPT, limits.EOM)


# Customers A and B both send as VICTIM; A's VPS earns an automatic block.
SHARED_ADDRESS_POLICY = """
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
# The hits come within one sub-window: count each.
distinct_hits = false
# 550 (not the default 451) so a blocked reply is told apart from a rate-limit deferral.
action = "reject"
"""


@dataclass
class Result:
    stage: Stage
    verdict: Verdict
    refused_rcpts: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.stage == Stage.EOM and self.verdict.action in (Action.ACCEPT, Action.QUARANTINE)


def transaction(
    store: RedisStore,
    policy: Policy,
    *,
    client: str = "203.0.113.7",
    mail_from: str = "orders@shop.example",
    rcpts: tuple[str, ...] = ("a@example.org",),
    login: str = "",
    size: int = 1000,
    extra: tuple[Check, ...] = (),
) -> Result:
    """MAIL, each RCPT, EOM through engine.decide, recording like the adapter does
    (`extra`: checks of the test's own beside the limit path)."""
    checks = (*LIMIT_CHECKS, *extra)
    msg = Message(client_address=normalise_ip(client), sasl_user=login, mail_from=mail_from)
    sender = identify(msg, Inventory(policy.customers), policy.identity.ipv6_prefix)

    def record(verdict: Verdict, stage: Stage) -> None:
        fields = decision_fields(msg, sender, verdict, stage, 0.0, True)
        with contextlib.suppress(StoreError):  # as in the adapter: a record, not a gate
            store.finish(Outcome(msg, sender, verdict, fields))

    verdict = engine.decide(msg, sender, policy, store, stage=Stage.MAIL, checks=checks)
    if verdict.action not in (Action.ACCEPT, Action.QUARANTINE):
        record(verdict, Stage.MAIL)
        return Result(Stage.MAIL, verdict)
    carried = list(verdict.findings) if verdict.action == Action.QUARANTINE else []
    refused = []
    for rcpt in rcpts:
        v = engine.decide(msg, sender, policy, store, stage=Stage.RCPT, rcpt=rcpt, checks=checks)
        if v.action in (Action.ACCEPT, Action.QUARANTINE):
            msg.add_rcpt(rcpt)
        else:
            record(v, Stage.RCPT)
            refused.append(rcpt)
    if not msg.rcpts:  # Postfix ends a transaction with no recipient before DATA
        with contextlib.suppress(StoreError):  # as in the adapter: the reservation back
            store.abandon(msg)
        return Result(Stage.RCPT, v, refused)
    msg.body_size = size
    verdict = engine.decide(msg, sender, policy, store, stage=Stage.EOM, checks=checks)
    if carried:
        verdict = engine.combine([*carried, *verdict.findings], policy, verdict.ref)
    record(verdict, Stage.EOM)
    return Result(Stage.EOM, verdict, refused)


def count_round_trips(client: redis.Redis) -> Callable[[], int]:
    """Packets written to Redis: one per command, one per pipeline. On a Cluster a
    pipeline is one batch per node, all written before any is read: one round trip
    however many nodes, so there it counts commands and pipelines executed
    (`count_node_batches` counts the batches)."""
    sent = [0]
    if is_cluster(client):
        _count_executions(client, sent)
    else:
        _count_sends(client.connection_pool, sent)
    return lambda: sent[0]


def count_node_batches(client: redis.Redis) -> Callable[[], int]:
    """Packets written to the nodes of a Cluster: one per node per pipeline."""
    sent = [0]
    assert is_cluster(client)
    for node in client.get_nodes():
        _count_sends(node.redis_connection.connection_pool, sent)
    return lambda: sent[0]


def _count_executions(client: Any, sent: list[int]) -> None:
    command, pipeline = client.execute_command, client.pipeline

    def execute_command(*args: Any, **kw: Any) -> Any:
        sent[0] += 1
        return command(*args, **kw)

    def counted_pipeline(*args: Any, **kw: Any) -> Any:
        pipe = pipeline(*args, **kw)
        run = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            sent[0] += 1
            return run(*a, **k)

        pipe.execute = execute
        return pipe

    client.execute_command = execute_command
    client.pipeline = counted_pipeline


def _count_sends(pool: Any, sent: list[int]) -> None:
    original = pool.get_connection

    def get_connection(*args: Any, **kw: Any) -> Any:
        conn = original(*args, **kw)
        if not getattr(conn, "_rw_counted", False):
            inner = conn.send_packed_command

            def send(*a: Any, **k: Any) -> Any:
                sent[0] += 1
                return inner(*a, **k)

            conn.send_packed_command = send
            conn._rw_counted = True
        return conn

    pool.get_connection = get_connection
