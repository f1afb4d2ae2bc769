"""`[redis]` on a real Redis Cluster: three masters started from
`redis-server --cluster-enabled yes` and joined by `redis-cli --cluster create`
(conftest's `redis_cluster`), redis-py's own RedisCluster client, the real adapter
on top (pymilter's TestCtx).

Every script runs with its keys in one slot (redis-py refuses a cross-slot
EVALSHA or multi-key command before sending it, and the server answers CROSSSLOT),
and every key a script touches is declared in KEYS (the scripts run guarded: an
undeclared key is an error). Either failure would surface as the fail mode's
451 4.3.0 instead of the replies asserted here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest
import redis
from Milter.testctx import TestCtx as MilterCtx

from relaywarden import blocking
from relaywarden.devstack.procs import free_port
from relaywarden.devstack.redis import ClusterServers
from relaywarden.limits import escalation
from relaywarden.limits.status import subject_status
from relaywarden.policy import PolicyError, load_policy
from relaywarden.runtime import Overrides, Runtime
from relaywarden.store import is_cluster
from relaywarden.subjects import parse_subject
from tests.limits_support import count_node_batches, count_round_trips
from tests.mail import message
from tests.milter_ctx import ctx_opts, deliver, install, open_ctx
from tests.redis_backend import DECLARING, guard_scripts, unguard_scripts

POLICY = """
[plans.p5]
messages = ["5/1m"]
recipients = ["50/1m"]
unique_recipients = ["30/1h"]
[plans.p5.customer]
messages = ["100/1m"]
[plans.p5.sender]
messages = ["100/1m"]

[[customers]]
id = "cust-cluster"
plan = "p5"
networks = ["203.0.113.0/24"]
domains = ["shop.example"]

[checks.sender]
enabled = false

[limits.burst]
floor = 1000
unique_recipients_floor = 1000
unique_domains_floor = 1000

[limits.escalation]
hits = 3
distinct_hits = false

[limits.inventory]
refresh = "1h"
"""


@pytest.fixture
def runtime(
    redis_cluster: ClusterServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    monkeypatch.setattr(MilterCtx, "default_opts", ctx_opts())
    saved = guard_scripts(DECLARING)
    policy = tmp_path / "policy.toml"
    # Each test its own key prefix: the session's cluster is shared.
    policy.write_text(POLICY + f'\n[redis]\nkey_prefix = "t{uuid.uuid4().hex[:12]}"\n')
    rt = Runtime.start(policy, Overrides(redis_url=redis_cluster.url))
    install(rt)
    try:
        yield rt
    finally:
        unguard_scripts(saved)


def send(ip: str, recipients: list[str], n: int = 0) -> str:
    """One message from `ip`: "250" or the reply that refused it."""
    ctx = open_ctx(ip)
    try:
        if ctx._envfrom("<orders@shop.example>") != Milter.CONTINUE:
            return " ".join(ctx._reply[:2])
        for rcpt in recipients:
            if ctx._envrcpt(f"<{rcpt}>") != Milter.CONTINUE:
                return " ".join(ctx._reply[:2])
        status = deliver(ctx, message(subject=f"cluster {n}"))
        return "250" if status == Milter.ACCEPT else " ".join(ctx._reply[:2])
    finally:
        ctx._close()


def counts(rt: Runtime, subject: str) -> dict[tuple[str, float], int]:
    report = subject_status(rt.store, rt.policy, parse_subject(subject))
    return {(w["unit"], w["window"]): w["count"] for w in report["windows"]}


def test_cluster_url_forms_and_errors_that_name_file_key_and_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[redis]\ncluster = true\nurl = "redis://10.0.0.1:7000"\nnodes = ["10.0.0.2:7000"]\n'
    )
    assert load_policy(good).redis.client_url == "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    url = tmp_path / "url.toml"
    url.write_text('[redis]\nurl = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"\n')
    assert load_policy(url).redis.client_url == "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    cases = {
        'url = "redis+cluster://10.0.0.1"': ("redis.url", "is not HOST:PORT"),
        'url = "redis+cluster://10.0.0.1:7000/2"': ("redis.url", "only database 0"),
        'nodes = ["10.0.0.2:7000"]': ("redis", "set cluster = true"),
        'cluster = true\nurl = "redis+sentinel://10.0.0.1:26379/m"': ("redis", "seed node"),
        'cluster = true\nnodes = ["10.0.0.2"]': ("redis.nodes", "is not HOST:PORT"),
    }
    for body, (key, reason) in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(f"[redis]\n{body}\n")
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        assert f"{path}: {key}: " in str(caught.value) and reason in str(caught.value), body


def test_limits_escalation_and_blocks_run_on_the_cluster_with_every_key_declared(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert is_cluster(runtime.store.client)
    jobs: list[escalation.Job] = []  # the escalation thread's queue, run below
    monkeypatch.setattr(escalation.ESCALATOR, "submit", jobs.append)
    ip = "203.0.113.31"
    recipients = ["a@example.org", "b@example.org"]
    assert [send(ip, recipients, n) for n in range(5)] == ["250"] * 5
    # Over the plan: refused at MAIL FROM, each refusal a hit; the third hit blocks.
    assert [send(ip, recipients) for _ in range(3)] == ["451 4.7.1"] * 3
    vps = parse_subject(f"vps:{ip}")
    notices = [n for n in (escalation.escalate(job) for job in jobs) if n]
    assert [n["subject"] for n in notices] == [f"vps:{ip}"]
    assert runtime.store.blocks_for([vps])
    listed = [b.subject for b in runtime.store.list_blocks()]
    assert f"vps:{ip}" in listed
    seen = counts(runtime, f"vps:{ip}")
    assert seen[("messages", 60.0)] == 5
    assert seen[("unique_recipients", 3600.0)] == 2  # HyperLogLog of the two, declared keys
    # A person lifts it (the block's hash and the index sit in different slots).
    assert blocking.unblock(runtime.store, vps, actor="test", reason="cluster test")
    assert f"vps:{ip}" not in [b.subject for b in runtime.store.list_blocks()]


def test_a_message_is_two_round_trips_each_one_batch_per_node(runtime: Runtime) -> None:
    """MAIL FROM and end of message: one pipeline each. On a Cluster redis-py writes
    a pipeline's batch to every node it needs before reading any reply, so each is
    one round trip of latency; the commands go to the slots listed in the README."""
    client: Any = runtime.store.client
    assert send("203.0.113.40", ["w@example.org"]) == "250"  # scripts loaded, pools warm
    slots: list[set[int]] = []
    pipeline = client.pipeline

    def recording(*args: Any, **kw: Any) -> Any:
        pipe = pipeline(*args, **kw)
        run = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            queue = pipe._execution_strategy.command_queue
            slots.append({_slot(client, c.args) for c in queue})
            return run(*a, **k)

        pipe.execute = execute
        return pipe

    client.pipeline = recording
    trips, batches = count_round_trips(client), count_node_batches(client)
    assert send("203.0.113.41", ["x@example.org", "y@example.org"]) == "250"
    assert trips() == 2
    assert len(slots) == 2
    nodes = len(client.get_primaries())
    assert batches() <= 2 * nodes  # at most one batch per node per round trip
    print(f"slots per pipeline: MAIL FROM {len(slots[0])}, end of message {len(slots[1])}")


def _slot(client: Any, args: tuple[Any, ...]) -> int:
    slot: int = client.determine_slot(*args)
    return slot


def test_a_cross_slot_script_call_is_refused_before_it_is_sent(runtime: Runtime) -> None:
    """The property the key design relies on: an EVALSHA whose KEYS span slots is
    refused before it is queued, so a script never runs half on the wrong node."""
    from relaywarden.limits import scripts

    pipe = runtime.store.client.pipeline(transaction=False)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        scripts.evalsha(pipe, "check", ["{a}x", "{b}y"], ["", '{"s": []}'])
    # ... and the server refuses one that reached it anyway.
    node = runtime.store.client.get_node_from_key("{a}x")
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
        runtime.store.client.execute_command(
            "EVAL", "return 1", 2, "{a}x", "{b}y", target_nodes=node
        )


def test_a_dead_cluster_applies_the_fail_mode_from_start_to_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay starts while no seed answers, tempfails (the default fail mode) with
    451 4.3.0 instead of crashing, and serves once the cluster is up; a master that
    dies later is the fail mode again, never a crash or an unchecked 250 for
    its slots."""
    monkeypatch.setattr(MilterCtx, "default_opts", ctx_opts())
    cluster = ClusterServers()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    for server in cluster.servers:  # ports chosen, nothing listening yet
        server.port = free_port()
    rt = Runtime.start(policy, Overrides(redis_url=cluster.url))
    install(rt)
    try:
        assert send("203.0.113.50", ["a@example.org"]) == "451 4.3.0"
        cluster.start(tmp_path / "cluster")
        assert send("203.0.113.50", ["a@example.org"]) == "250"
        cluster.servers[0].stop()
        answers = [send(f"203.0.113.{60 + n}", ["a@example.org"]) for n in range(6)]
        assert set(answers) <= {"250", "451 4.3.0"}, answers
        assert "451 4.3.0" in answers, answers
    finally:
        cluster.stop()


def test_a_watcher_killed_between_moving_and_counting_counts_each_slot_once(
    redis_cluster: ClusterServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Cluster the log position moves first (with the batch kept beside it),
    then each slot counts: a watcher killed in between leaves the batch pending, the
    next one counts it, and counting a pending batch again changes nothing."""
    import shutil

    from relaywarden.outcomes.record import identity_key
    from relaywarden.outcomes.watcher import Watcher
    from relaywarden.store import RedisStore, connect
    from tests import test_outcomes_watcher as w

    store = RedisStore(connect(redis_cluster.url, 5.0), f"t{uuid.uuid4().hex[:12]}")
    for qid, identity in w.OURS.items():
        store.client.set(identity_key(store.keys.prefix, w.RELAY, qid), identity.dumps())
    log = tmp_path / "maillog"
    shutil.copy(w.DATA, log)
    pol = w.policy(batch=10_000)  # one batch: the whole recording
    pending: list[bytes] = []

    def killed(self: Watcher, batch: bytes) -> None:
        pending.append(batch)
        raise RuntimeError("killed after moving the position")

    monkeypatch.setattr(Watcher, "_apply", killed)
    with pytest.raises(RuntimeError):
        Watcher(store, pol, str(log), clock=w.CLOCK).step()
    monkeypatch.undo()
    assert pending  # the position moved with the batch beside it, nothing counted
    assert w.tally(store, "vps:203.0.113.7", pol) == {}
    Watcher(store, pol, str(log), clock=w.CLOCK).run_once()  # finishes it first
    lines = [line.rstrip("\n") for line in w.DATA.read_text().splitlines()]
    want = {vps: dict(w.expected(lines, vps)) for vps in ("203.0.113.7", "198.51.100.9")}
    assert {vps: w.tally(store, f"vps:{vps}", pol) for vps in want} == want
    Watcher(store, pol, str(log), clock=w.CLOCK)._apply(pending[0])  # once per slot
    assert {vps: w.tally(store, f"vps:{vps}", pol) for vps in want} == want
