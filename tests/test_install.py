"""The production install path, as README and docs/operations.md describe it:
scripts/install.sh builds the wheel, installs it with its runtime dependencies
only into a fresh venv made with the system's Python, and renders the systemd
units for that prefix; the installed command then works without a source tree.

Needs the package index (or pip's cache / PIP_FIND_LINKS) for the runtime
dependencies, as an operator's install does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="rw-install-"))
    prefix, units = base / "opt" / "relaywarden", base / "units"
    try:
        out = subprocess.run(
            [
                str(ROOT / "scripts" / "install.sh"),
                "--prefix",
                str(prefix),
                "--no-system",
                "--no-apt",
                "--units-dir",
                str(units),
            ],
            capture_output=True,
            text=True,
            timeout=850,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        yield prefix, units
    finally:
        shutil.rmtree(base, ignore_errors=True)


def relaywarden(
    prefix: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Outside the checkout, with no PYTHONPATH: only the installed package can answer.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RELAYWARDEN_CONFIG")}
    return subprocess.run(
        [str(prefix / "bin" / "relaywarden"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**clean, **(env or {})},
    )


def test_venv_uses_the_system_python(installed: tuple[Path, Path]) -> None:
    prefix, _ = installed
    cfg = (prefix / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg


def test_installed_command_checks_the_packaged_default_policy(installed: tuple[Path, Path]) -> None:
    prefix, _ = installed
    out = relaywarden(prefix, "check-config")
    assert out.returncode == 0, out.stderr
    packaged = prefix / "lib"
    assert str(packaged) in out.stdout and out.stdout.strip().endswith(
        "relaywarden/defaults/policy.toml: ok"
    )
    assert "site-packages" in out.stdout  # not the checkout's policies/ directory


def test_installed_command_follows_relaywarden_config(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    prefix, _ = installed
    bad = tmp_path / "bad.toml"
    bad.write_text("[milter]\nlisten = 'nowhere'\n")
    out = relaywarden(prefix, "check-config", env={"RELAYWARDEN_CONFIG": str(bad)})
    assert out.returncode == 1 and f"{bad}: milter.listen:" in out.stderr


def test_installed_help_works_and_keeps_section_names(installed: tuple[Path, Path]) -> None:
    prefix, _ = installed
    out = relaywarden(prefix, "--help")
    assert out.returncode == 0 and "check-config" in out.stdout
    run_help = relaywarden(prefix, "run", "--help", env={"COLUMNS": "200"})
    assert "overrides [dns] nameservers" in " ".join(run_help.stdout.split())


def test_runtime_only_no_development_tools(installed: tuple[Path, Path]) -> None:
    prefix, _ = installed
    py = str(prefix / "bin" / "python")
    present = subprocess.run(
        [py, "-c", "import Milter, redis, fastapi, argon2, uvicorn, spf, dns.resolver"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert present.returncode == 0, present.stderr
    for dev_only in (
        "pytest",
        "hypothesis",
        "playwright",
        "mypy",
        "dnslib",
        "schemathesis",
    ):
        found = subprocess.run(
            [py, "-c", f"import {dev_only}"], capture_output=True, timeout=60, cwd="/"
        )
        assert found.returncode != 0, f"{dev_only} is installed in the runtime venv"


def test_units_pass_systemd_analyze_verify(installed: tuple[Path, Path]) -> None:
    prefix, units = installed
    rendered = sorted(units.glob("*.service"))
    assert [u.name for u in rendered] == [
        "relaywarden-agent.service",
        "relaywarden-web.service",
        "relaywarden.service",
    ]
    for unit in rendered:
        assert f"{prefix}/bin/relaywarden" in unit.read_text()
    out = subprocess.run(
        ["systemd-analyze", "verify", *map(str, rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Verify also checks that ExecStart points at an executable: the installed one.
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
