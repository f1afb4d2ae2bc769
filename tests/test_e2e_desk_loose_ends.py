"""The desk's loose ends, end to end: reference lookup, the index scan, the agent's
queue, the CLI's papercuts, static blocks, automation by API token.

Real Postfix hold queue, real Redis, the CLI as an operator types it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from relaywarden.desk import index
from relaywarden.desk.postfix import PostfixTools
from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.stack import Stack
from relaywarden.store import RedisStore, connect
from tests.desk import cli, desk_policy, hold
from tests.mail import message
from tests.test_desk_attacks import app_for
from tests.test_web import login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REF = re.compile(r"RW-[A-Z2-7]{10}")


@pytest.fixture
def policy(stack: Stack, tmp_path: Path) -> Path:
    return desk_policy(stack, tmp_path / "desk.toml")


def store_of(stack: Stack) -> RedisStore:
    return RedisStore(connect(stack.redis_url, 5.0), "rw")


def listed(policy: Path, stack: Stack) -> dict[str, dict]:  # type: ignore[type-arg]
    out = cli(policy, stack.redis_url, "quarantine", "list", "--json")
    assert out.returncode == 0, out.stderr
    return {e["queue_id"]: e for e in json.loads(out.stdout)}


# -- references ---------------------------------------------------------------------
def test_any_decision_is_found_by_its_reference(stack: Stack, policy: Path) -> None:
    rejected = stack.send("orders@shop.example", ["a@example.org"], message(), client="192.0.2.66")
    deferred = stack.send("orders@shop.example", ["a@example.org"], message(), login="suspended")
    assert (rejected.code, deferred.code // 100) == (550, 4)
    qid = hold(stack, "ref lookup e2e", client="203.0.113.70")
    held_ref = index.get(store_of(stack), qid)[0].ref
    for reply, action in ((rejected.text, "reject"), (deferred.text, "tempfail")):
        ref = REF.search(reply)
        assert ref, reply
        out = cli(policy, stack.redis_url, "ref", ref.group(0), "--json")
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)
        assert found["decisions"] and all(d["ref"] == ref.group(0) for d in found["decisions"])
        assert found["decisions"][0]["action"] == action
        text = cli(policy, stack.redis_url, "ref", ref.group(0).lower())
        assert f"{ref.group(0)}  {action}" in text.stdout
    held = json.loads(cli(policy, stack.redis_url, "ref", held_ref, "--json").stdout)
    assert [e["queue_id"] for e in held["held"]] == [qid]
    assert cli(policy, stack.redis_url, "ref", "RW-AAAAAAAAAA").returncode == 1
    assert cli(policy, stack.redis_url, "ref", "not-a-ref").returncode == 2
    # The desk finds it too, and a reference typed into the list's search links there.
    with TestClient(app_for(stack, policy, "rw")) as client:
        login(client, "victor")
        ref = REF.search(rejected.text)
        assert ref
        page = client.get("/ref", params={"ref": ref.group(0)})
        assert page.status_code == 200 and "known spam source" in page.text
        assert client.get(f"/api/ref/{ref.group(0)}").json()["decisions"][0]["action"] == "reject"
        assert 'id="ref-lookup"' in client.get("/", params={"q": ref.group(0)}).text
        assert client.get("/api/ref/nonsense").status_code == 400


# -- the index and the hold queue -------------------------------------------------------
def test_scan_files_unknown_held_messages_and_marks_gone_ones(
    stack: Stack, policy: Path, tmp_path: Path
) -> None:
    assert stack.postfix is not None
    store = store_of(stack)
    lost = hold(stack, "lost from the index e2e", client="203.0.113.71")
    vanished = hold(stack, "vanished before scan e2e", client="203.0.113.72")
    # Redis lost the first entry; an admin deleted the second message by hand.
    entry = index.get(store, lost)[0]
    store.client.delete(index.entry_key(store, lost))
    store.client.zrem(index.index_key(store), json.dumps([entry.relay, lost]))
    stack.postfix.postsuper("-d", vanished, "hold")
    assert lost not in listed(policy, stack)
    # A scan that cannot read the queue says so and changes nothing.
    broken = desk_policy(stack, tmp_path / "broken.toml")
    broken.write_text(broken.read_text().replace(
        f'postfix_config_dir = "{stack.postfix.config_dir}"',
        'postfix_config_dir = "/nonexistent"'))  # fmt: skip
    out = cli(broken, stack.redis_url, "quarantine", "scan")
    assert out.returncode == 1 and "could not read the hold queue" in out.stderr
    assert listed(policy, stack)[vanished]["state"] == "held"
    shown = cli(broken, stack.redis_url, "quarantine", "show", vanished, "--json")
    assert "could not read the hold queue" in json.loads(shown.stdout)["preview_note"]
    # The real scan.
    out = cli(policy, stack.redis_url, "quarantine", "scan", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert lost in report["added"] and vanished in report["gone"]
    now = listed(policy, stack)
    assert now[vanished]["state"] == "gone"
    filed = now[lost]
    assert (filed["subject"], filed["sender"], filed["vps"]) == (
        "lost from the index e2e", "promo@shop.example", "203.0.113.71")  # fmt: skip
    assert filed["findings"][0]["name"] == "found-by-scan"
    vps_list = cli(policy, stack.redis_url, "quarantine", "list", "--vps", "203.0.113.71", "--json")
    assert [e["queue_id"] for e in json.loads(vps_list.stdout)] == [lost]
    # A second scan finds nothing new.
    again = json.loads(cli(policy, stack.redis_url, "quarantine", "scan", "--json").stdout)
    assert lost not in again["added"] and not again["gone"]


# -- the agent's queue ------------------------------------------------------------------
def run_agent(policy: Path, stack: Stack, until: object, what: str) -> None:
    argv = [sys.executable, "-m", "relaywarden", "agent", "--config", str(policy),
            "--redis-url", stack.redis_url]  # fmt: skip
    agent = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})  # fmt: skip
    try:
        poll_until(until, 60, what)  # type: ignore[arg-type]
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)


def test_queued_actions_are_at_least_once_idempotent_and_failures_show(
    stack: Stack, policy: Path, tmp_path: Path
) -> None:
    assert stack.postfix is not None
    store = store_of(stack)
    elsewhere = desk_policy(stack, tmp_path / "elsewhere.toml", relay_name="desk-host")
    twice = hold(stack, "queued twice e2e", client="203.0.113.73")
    doomed = hold(stack, "doomed e2e", client="203.0.113.74")
    orphan = hold(stack, "orphaned job e2e", client="203.0.113.75")
    for qid in (twice, twice, doomed):
        out = cli(elsewhere, stack.redis_url, "quarantine", "release", qid, "--yes")
        assert "release queued" in out.stdout, out.stderr
    stack.postfix.postsuper("-d", doomed, "hold")  # gone before the agent runs
    # A job an earlier agent took and died on: still in the working list.
    relay = index.get(store, orphan)[0].relay
    from relaywarden.desk.service import Desk
    from relaywarden.policy import load_policy

    desk = Desk.from_policy(load_policy(policy), stack.redis_url)
    job = {"action": "delete", "queue_id": orphan, "actor": "ana", "reason": "", "via": "cli"}
    store.client.lpush(desk.working_key(relay), json.dumps(job))

    def settled() -> bool:
        now = listed(policy, stack)
        return (now[twice]["state"], now[doomed]["state"], now[orphan]["state"]) == (
            "released", "failed", "deleted")  # fmt: skip

    run_agent(policy, stack, settled, "the agent's work")
    stack.sink.wait_for(lambda m: m.subject == "queued twice e2e", timeout=60)
    trail = [a for a in json.loads(cli(policy, stack.redis_url, "audit", "--since", "1h",
                                       "--json", "--limit", "500").stdout)]  # fmt: skip
    agent_twice = [a for a in trail if a["target"] == twice and a["via"] == "agent"]
    assert [a["details"]["result"] for a in agent_twice] == ["done"]  # applied once
    assert any(a["target"] == doomed and a["details"]["result"] == "failed" for a in trail)
    assert listed(policy, stack)[doomed]["state_detail"].startswith("release failed")
    assert store.client.llen(desk.working_key(relay)) == 0


def test_release_never_flushes_the_whole_queue(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    scripts = {
        "postsuper": f'echo "$0 $*" >> {log}\necho "postsuper: Released from hold: 1 message" >&2',
        "postqueue": f'echo "$0 $*" >> {log}\nexit 1',  # -i fails: the message waits its turn
    }
    for tool, body in scripts.items():
        path = tmp_path / tool
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    PostfixTools("/nonexistent", str(tmp_path)).release("4jbxmr3LvPzJ9Nx")
    calls = log.read_text().splitlines()
    assert any(" -i 4jbxmr3LvPzJ9Nx" in c for c in calls)
    assert not any(c.endswith(" -f") or " -f " in c for c in calls), calls


# -- CLI papercuts ------------------------------------------------------------------------
def test_single_id_release_does_not_prompt_and_unblock_reset_take_a_reason(
    stack: Stack, policy: Path
) -> None:
    qid = hold(stack, "no prompt e2e", client="203.0.113.76")
    out = cli(policy, stack.redis_url, "quarantine", "release", qid, "--as", "ana", input="")
    assert out.returncode == 0 and "release done" in out.stdout, out.stdout + out.stderr
    for args in (["block", "vps:198.51.100.93", "--for", "1h", "--reason", "spam"],
                 ["unblock", "vps:198.51.100.93", "--reason", "customer cleaned up"],
                 ["reset", "vps:198.51.100.93", "--reason", "fresh start"]):  # fmt: skip
        done = cli(policy, stack.redis_url, *args)
        assert done.returncode == 0, done.stderr
    trail = json.loads(cli(policy, stack.redis_url, "audit", "--subject", "vps:198.51.100.93",
                           "--json").stdout)  # fmt: skip
    reasons = {a["action"]: a["reason"] for a in trail}
    assert reasons["unblock"] == "customer cleaned up" and reasons["reset"] == "fresh start"


# -- the Blocks page and automation -------------------------------------------------------
def test_blocks_page_shows_the_policys_static_blocks(stack: Stack, policy: Path) -> None:
    with TestClient(app_for(stack, policy, "rw")) as client:
        login(client, "victor")
        page = client.get("/blocks").text
        static = page.split('id="static-blocks"', 1)[1]
        assert "network:192.0.2.66/32" in static and "known spam source" in static
        api = client.get("/api/blocks/static").json()
        assert {"subject": "user:suspended", "action": "tempfail",
                "reason": "account suspended"} in api  # fmt: skip


def test_service_account_uses_the_api_with_a_token_and_is_audited(
    stack: Stack, tmp_path: Path
) -> None:
    token = "automation-token-for-the-test-0123456789"
    digest = hashlib.sha256(token.encode()).hexdigest()
    policy = desk_policy(stack, tmp_path / "bot.toml")
    policy.write_text(policy.read_text() + "\n[[web.service_accounts]]\nname = \"ticket-bot\"\n"
                      f'role = "operator"\ntoken_sha256 = "{digest}"\n')  # fmt: skip
    app = app_for(stack, policy, "rwbot")
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/api/blocks", headers=bearer).status_code == 200
        made = client.post("/api/blocks", headers=bearer, json={
            "subject": "vps:198.51.100.94", "reason": "ticket 42", "duration": "1h"})  # fmt: skip
        assert made.status_code == 200, made.text
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.get("/api/blocks", headers=wrong).status_code == 401
        # A token is for the API: the HTML forms still want a session and its CSRF token.
        form = client.post("/blocks", headers=bearer, data={
            "subject": "vps:198.51.100.95", "reason": "x", "duration": "1h"})  # fmt: skip
        assert form.status_code == 403
        trail = client.get("/api/audit", headers=bearer, params={"action": "block"}).json()
    assert [(a["actor"], a["via"], a["target"]) for a in trail] == [
        ("ticket-bot", "api", "vps:198.51.100.94")
    ]
