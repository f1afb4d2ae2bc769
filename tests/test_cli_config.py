"""`relaywarden check-config`, run as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaywarden", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "policies").glob("*.toml")))
def test_shipped_policies_are_valid(name: str) -> None:
    out = check(ROOT / "policies" / name)
    assert out.returncode == 0, out.stderr


def test_every_error_names_file_key_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[milter]\nlisten = "9900"\ncolour = "blue"\n'
        '[redis]\ntimeout = "soon"\n'
        '[[blocks]]\nsubject = "planet:mars"\n'
        '[[blocks]]\nsubject = "network:192.0.2.300/32"\n'
        "[scoring]\nquarantine = 20\nreject = 10\n"
    )
    out = check(bad)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert all(line.startswith(f"{bad}: ") for line in lines)
    text = out.stderr
    assert "milter.listen: use libmilter syntax" in text
    assert "milter.colour: unknown key" in text
    assert "redis.timeout: 'soon' is not a duration" in text
    assert "blocks[0].subject:" in text and "planet:mars" in text
    assert "blocks[1].subject:" in text
    assert "scoring: reject threshold must not be below" in text
    assert len(lines) == 6


def test_toml_syntax_error_is_reported_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[milter\nlisten = 1\n")
    out = check(bad)
    assert out.returncode == 1
    assert out.stderr.startswith(f"{bad}: not valid TOML")


def test_missing_file(tmp_path: Path) -> None:
    out = check(tmp_path / "nope.toml")
    assert out.returncode == 1 and "cannot read" in out.stderr


def test_default_policy_documents_the_forgery_defaults() -> None:
    """policies/default.toml states the same values the schema embeds."""
    from relaywarden.policy import Policy, load_policy

    shipped, embedded = load_policy(ROOT / "policies" / "default.toml"), Policy()
    for section in ("relay", "dns", "brands"):
        assert getattr(shipped, section) == getattr(embedded, section), section
    assert shipped.checks.headers == embedded.checks.headers
    assert shipped.checks.sender == embedded.checks.sender
