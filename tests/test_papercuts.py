"""Small things an operator trips over: evidence printed as text, help texts that
keep policy section names, check-config reporting everything in one pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relaywarden.cli.text import evidence_text

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaywarden", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_evidence_reads_as_text_and_control_characters_are_inert() -> None:
    text = evidence_text(
        {"domain": "paypal.com", "spf": {"192.0.2.10": "fail"}, "hits": [3, 4], "ratio": 0.5}
    )
    assert text == "domain: paypal.com; spf: {192.0.2.10: fail}; hits: 3, 4; ratio: 0.5"
    hostile = evidence_text({"subject": "invoice\x1b[2J\u202eexe.pdf\r\nforged: line"})
    assert "\x1b" not in hostile and "\u202e" not in hostile and "\n" not in hostile
    assert "\\u001b" in hostile and "\\u202e" in hostile


def test_help_texts_keep_section_names() -> None:
    for args, expected in (
        (["run", "--help"], "overrides [dns] nameservers"),
        (["web", "--help"], "[[web.users]]"),
        (["inventory", "--help"], "[limits.inventory] refresh"),
    ):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert expected in " ".join(out.stdout.split()), (args, out.stdout)


def test_check_config_reports_field_and_cross_key_errors_in_one_pass(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[milter]\nlisten = "9900"\n'
        '[plans.small]\nmessages = ["5/1m"]\n'
        '[[customers]]\nid = "a"\nplan = "gold"\nnetworks = ["192.0.2.0/24"]\n'
        '[[customers]]\nid = "b"\nplan = "small"\nnetworks = ["192.0.2.0/24", "2001:db8::/64"]\n'
        '[[customers]]\nid = "c"\nnetworks = ["2001:db8:0:0::/64"]\n'
        '[[limits.overrides]]\nsubject = "vps:192.0.2.9"\nplan = "platinum"\n'
    )
    out = cli("check-config", str(bad))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert all(line.startswith(f"{bad}: ") for line in lines)
    text = out.stderr
    assert "milter.listen: use libmilter syntax" in text  # a per-key error ...
    assert "customers[0].plan: unknown plan 'gold'" in text  # ... and the cross-key ones
    assert "limits.overrides[0].plan: unknown plan 'platinum'" in text
    assert "customers[1].networks: 192.0.2.0/24 is also claimed by customer 'a'" in text
    assert "customers[2].networks: 2001:db8::/64 is also claimed by customer 'b'" in text
    assert len(lines) == 5


def test_check_config_without_a_file_uses_the_environment(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text("[scoring]\nreject = 12\n")
    out = subprocess.run(
        [sys.executable, "-m", "relaywarden", "check-config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RELAYWARDEN_CONFIG": str(good)},
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == f"{good}: ok"
