"""The desk from the command line, end to end: real Postfix hold queue, real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.stack import Stack
from tests.desk import HELD_SENDER, cli, desk_policy, hold

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def policy(stack: Stack, tmp_path: Path) -> Path:
    return desk_policy(stack, tmp_path / "desk.toml")


def held_ids(stack: Stack) -> set[str]:
    assert stack.postfix is not None
    return {e["queue_id"] for e in stack.postfix.hold_queue()}


def audit_log(policy: Path, stack: Stack) -> list[dict]:  # type: ignore[type-arg]
    out = cli(policy, stack.redis_url, "audit", "--since", "1h", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_held_message_is_indexed_with_its_findings(stack: Stack, policy: Path) -> None:
    qid = hold(stack, "indexed e2e", client="203.0.113.21", login="bob")
    assert qid in held_ids(stack)
    out = cli(policy, stack.redis_url, "quarantine", "list", "--vps", "203.0.113.21", "--json")
    assert out.returncode == 0, out.stderr
    entry = next(e for e in json.loads(out.stdout) if e["queue_id"] == qid)
    assert entry["shown_state"] == "held" and entry["in_hold"] is True
    assert (entry["sender"], entry["sasl_user"], entry["subject"]) == (
        HELD_SENDER,
        "bob",
        "indexed e2e",
    )
    assert entry["recipients"] == ["buyer@example.org"] and entry["recipient_total"] == 1
    assert entry["ref"].startswith("RW-")
    finding = entry["findings"][0]
    assert (finding["check"], finding["name"]) == ("blocks", "blocked")
    assert finding["evidence"]["reason"] == "bulk promotion under review"

    shown = cli(policy, stack.redis_url, "quarantine", "show", qid, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert "your order left our warehouse" in view["preview"]
    assert ["Subject", "indexed e2e"] in view["headers"]
    assert view["status"]["subjects"][0] == "vps:203.0.113.21"
    assert sum(view["status"]["per_hour"]) >= 1
    # The sender's rate-limit standing comes along (relaywarden.limits.status).
    limits = {lim["subject"]: lim for lim in view["status"]["limits"]}
    vps = limits["vps:203.0.113.21"]
    assert vps["plan"] == "default"
    assert any(w["unit"] == "messages" and w["count"] >= 1 for w in vps["windows"])


def test_release_delivers_and_is_audited(stack: Stack, policy: Path) -> None:
    qid = hold(stack, "release me e2e", client="203.0.113.22")
    out = cli(
        policy,
        stack.redis_url,
        "quarantine",
        "release",
        qid,
        "--yes",
        "--as",
        "ana",
        "--reason",
        "customer confirmed",
    )
    assert out.returncode == 0, out.stderr
    assert "release done" in out.stdout
    stack.sink.wait_for(lambda m: m.subject == "release me e2e", timeout=60)
    assert qid not in held_ids(stack)
    listed = json.loads(cli(policy, stack.redis_url, "quarantine", "list", "--json").stdout)
    assert next(e for e in listed if e["queue_id"] == qid)["state"] == "released"
    entry = next(a for a in audit_log(policy, stack) if a["target"] == qid)
    assert (entry["actor"], entry["action"], entry["reason"], entry["via"]) == (
        "ana",
        "release",
        "customer confirmed",
        "cli",
    )
    assert entry["details"]["result"] == "done"


def test_delete_removes_from_queue_and_is_audited(stack: Stack, policy: Path) -> None:
    qid = hold(stack, "delete me e2e", client="203.0.113.23")
    out = cli(policy, stack.redis_url, "quarantine", "delete", qid, "--yes", "--as", "ana")
    assert out.returncode == 0, out.stderr
    assert stack.postfix is not None
    assert not [e for e in stack.postfix.queue() if e["queue_id"] == qid]
    entry = next(a for a in audit_log(policy, stack) if a["target"] == qid)
    assert (entry["actor"], entry["action"]) == ("ana", "delete")
    # Deleting again finds nothing to delete: reported, not pretended.
    again = cli(policy, stack.redis_url, "quarantine", "delete", qid, "--yes")
    assert again.returncode == 1


def test_bulk_release_per_vps_needs_confirmation(stack: Stack, policy: Path) -> None:
    ids = {hold(stack, f"bulk {n} e2e", client="203.0.113.24") for n in range(3)}
    other = hold(stack, "bulk bystander e2e", client="203.0.113.25")
    refused = cli(
        policy, stack.redis_url, "quarantine", "release", "--vps", "203.0.113.24", input="n\n"
    )
    assert refused.returncode != 0
    assert ids <= held_ids(stack)
    out = cli(
        policy,
        stack.redis_url,
        "quarantine",
        "release",
        "--vps",
        "203.0.113.24",
        "--as",
        "ana",
        input="y\n",
    )
    assert out.returncode == 0, out.stderr
    poll_until(
        lambda: (
            sum(1 for m in stack.sink.messages if m.subject in {f"bulk {n} e2e" for n in range(3)})
            == 3
        ),
        60,
        "three released",
    )
    assert other in held_ids(stack)
    released = {a["target"] for a in audit_log(policy, stack) if a["action"] == "release"}
    assert ids <= released and other not in released


@pytest.mark.parametrize("bad", ["ALL", "-", "-d", "../x", "ABC;rm", "deferred", "$(id)"])
def test_bad_queue_ids_are_refused(stack: Stack, policy: Path, bad: str) -> None:
    for verb in ("release", "delete", "show"):
        args = ["quarantine", verb, *(["--yes"] if verb != "show" else []), "--", bad]
        out = cli(policy, stack.redis_url, *args)
        assert out.returncode != 0
        assert "not a Postfix queue id" in out.stderr


def test_action_for_another_relay_is_queued_and_applied_by_its_agent(
    stack: Stack, tmp_path: Path
) -> None:
    qid = hold(stack, "remote relay e2e", client="203.0.113.26")
    # This desk runs on another host: the message is not its to touch.
    elsewhere = desk_policy(stack, tmp_path / "elsewhere.toml", relay_name="desk-host")
    out = cli(elsewhere, stack.redis_url, "quarantine", "release", qid, "--yes", "--as", "ana")
    assert out.returncode == 0, out.stderr
    assert "release queued" in out.stdout
    assert qid in held_ids(stack)
    # The relay that holds it runs the agent.
    here = desk_policy(stack, tmp_path / "here.toml")
    argv = [
        sys.executable,
        "-m",
        "relaywarden",
        "agent",
        "--config",
        str(here),
        "--redis-url",
        stack.redis_url,
    ]
    agent = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        stack.sink.wait_for(lambda m: m.subject == "remote relay e2e", timeout=60)
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
    entries = [a for a in audit_log(here, stack) if a["target"] == qid]
    assert {(a["via"], a["details"]["result"]) for a in entries} == {
        ("cli", "queued"),
        ("agent", "done"),
    }
    assert all(a["actor"] == "ana" for a in entries)
    listed = json.loads(cli(here, stack.redis_url, "quarantine", "list", "--json").stdout)
    assert next(e for e in listed if e["queue_id"] == qid)["state"] == "released"


def test_agent_thread_in_relaywarden_run_applies_queued_actions(
    private_stack, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import tempfile

    # Postfix's config dir must be known to the milter's policy before it starts,
    # so the stack gets a work dir of our choosing (under /tmp: Postfix's own
    # user must traverse it, which pytest's 0700 tmp_path forbids).
    workdir = Path(tempfile.mkdtemp(prefix="relaywarden-agent-"))
    stack = None
    try:
        config_dir = workdir / "postfix" / "etc"
        policy = (
            '[[blocks]]\nsubject = "sender:promo@shop.example"\naction = "quarantine"\n'
            'reason = "review"\n\n'
            f'[quarantine]\nagent = true\npostfix_config_dir = "{config_dir}"\n'
        )
        stack = private_stack(policy, workdir=workdir)
        qid = hold(stack, "agent thread e2e", client="203.0.113.27")
        elsewhere = desk_policy(stack, tmp_path / "elsewhere.toml", relay_name="desk-host")
        out = cli(elsewhere, stack.redis_url, "quarantine", "delete", qid, "--yes", "--as", "ana")
        assert "delete queued" in out.stdout, out.stderr
        assert stack.postfix is not None
        stack.postfix.wait_queue(
            lambda entries: not any(e["queue_id"] == qid for e in entries), 60, "the delete"
        )
        agent_entry = next(a for a in audit_log(elsewhere, stack) if a["via"] == "agent")
        assert (agent_entry["target"], agent_entry["action"], agent_entry["actor"]) == (
            qid,
            "delete",
            "ana",
        )
    finally:
        if stack is not None:
            stack.stop()  # before its directory goes
        shutil.rmtree(workdir, ignore_errors=True)


def test_message_gone_from_hold_queue_is_shown_as_such(stack: Stack, policy: Path) -> None:
    qid = hold(stack, "vanished e2e", client="203.0.113.28")
    assert stack.postfix is not None
    stack.postfix.postsuper("-d", qid, "hold")  # e.g. an admin's own postsuper
    listed = json.loads(cli(policy, stack.redis_url, "quarantine", "list", "--json").stdout)
    entry = next(e for e in listed if e["queue_id"] == qid)
    assert (entry["state"], entry["in_hold"], entry["shown_state"]) == (
        "held",
        False,
        "left the hold queue",
    )
    shown = json.loads(cli(policy, stack.redis_url, "quarantine", "show", qid, "--json").stdout)
    assert shown["preview"] is None
    assert shown["preview_note"] == "the message is no longer in the hold queue"
