"""`relaywarden replay`: recorded traffic through the current policy, run as an
operator would (the CLI), from .eml files with envelopes and from decision
records in the milter's JSON log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from relaywarden.checks import Stage
from relaywarden.decisionlog import decision_fields
from relaywarden.engine import decide
from relaywarden.identity import identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import policy_from_dict
from relaywarden.verdict import Finding, Verdict
from tests.fakes import FakeStore

ROOT = Path(__file__).resolve().parents[1]
EML = ROOT / "tests" / "eml"
BLOCKING = '[[blocks]]\nsubject = "network:192.0.2.66/32"\nreason = "known spam source"\n'


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaywarden", "replay", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def eml_dir(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir(parents=True)
    for name, client, action in (
        ("shop", "203.0.113.7", "accept"),
        ("spammer", "192.0.2.66", "accept"),
        ("other", "198.51.100.5", "accept"),
    ):
        shutil.copy(EML / "clean.eml", corpus / f"{name}.eml")
        envelope = {"mail_from": "orders@shop.example", "rcpts": ["buyer@example.org"],
                    "client_address": client, "action": action}  # fmt: skip
        (corpus / f"{name}.json").write_text(json.dumps(envelope))
    return corpus


def test_eml_directory_shows_what_a_new_block_would_change(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(BLOCKING)
    out = replay(str(eml_dir(tmp_path)), "--config", str(policy), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["replayed"] == 3 and report["changed"] == 1
    assert {"from": "accept", "to": "reject", "count": 1} in report["transitions"]
    assert {"from": "accept", "to": "accept", "count": 2} in report["transitions"]
    assert report["findings_in_changed"] == {"blocks/blocked": 1}
    assert report["changes"][0]["label"] == "spammer.eml"

    text = replay(str(eml_dir(tmp_path / "again")), "--config", str(policy)).stdout
    assert "replayed 3 message(s): 1 would change" in text
    assert "accept -> reject" in text and "spammer.eml: accept -> reject  blocks/blocked" in text


def test_replay_is_bounded(tmp_path: Path) -> None:
    out = replay(str(eml_dir(tmp_path)), "--limit", "2", "--json")
    report = json.loads(out.stdout)
    assert report["replayed"] == 2 and report["truncated"] is True


def logged(verdict: Verdict, client: str, tmp_path: Path) -> str:
    msg = message_from_bytes((EML / "clean.eml").read_bytes(), client_address=client)
    fields = decision_fields(msg, identify(msg), verdict, Stage.EOM, 1.0, True)
    # As the milter's log has it: one JSON object per line among other lines.
    return json.dumps({"time": "2026-11-29T10:00:00.000Z", "level": "info", **fields})


def test_decision_records_are_replayed_and_rescored(tmp_path: Path) -> None:
    then = policy_from_dict({})
    msg = message_from_bytes((EML / "clean.eml").read_bytes(), client_address="192.0.2.66")
    accepted = decide(msg, identify(msg), then, FakeStore(), stage=Stage.MAIL)
    held = Verdict(
        action=accepted.action.QUARANTINE, reply=None, score=6.0, ref="RW-HELD000001",
        findings=(Finding("headers", "date-missing", 6.0),),
    )  # fmt: skip
    log = tmp_path / "milter.log"
    log.write_text(
        "\n".join(
            [
                '{"level": "info", "message": "relaywarden 0.1.0 starting"}',
                logged(accepted, "192.0.2.66", tmp_path),
                logged(held, "203.0.113.7", tmp_path),
                "not json at all",
            ]
        )
    )
    policy = tmp_path / "p.toml"
    # A new static block, and a quarantine threshold the held one no longer reaches.
    policy.write_text(BLOCKING + "[scoring]\nquarantine = 8.0\n")
    out = replay(str(log), "--config", str(policy), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["replayed"] == 2 and report["changed"] == 2
    transitions = {(t["from"], t["to"]): t["count"] for t in report["transitions"]}
    assert transitions == {("accept", "reject"): 1, ("quarantine", "accept"): 1}
    # The recorded end-of-message finding is kept (a record has no headers to re-check).
    assert report["findings"]["headers/date-missing"] == 1
