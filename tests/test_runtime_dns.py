"""The resolver the milter runs with: built from [dns], --nameserver overrides it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relaywarden.policy import policy_from_dict
from relaywarden.runtime import Overrides, _resolver_for

ROOT = Path(__file__).resolve().parents[1]


def test_nameserver_flag_overrides_the_policy_and_survives_reload() -> None:
    policy = policy_from_dict({"dns": {"nameservers": ["192.0.2.53:53"], "budget": "2s"}})
    applied = Overrides(nameservers=["127.0.0.1:5353"]).apply(policy)
    assert applied.dns.nameservers == ["127.0.0.1:5353"]
    assert applied.dns.budget == 2.0
    resolver = _resolver_for(applied)
    assert resolver.budget == 2.0
    assert [(ns.address, ns.port) for ns in resolver._dns.nameservers] == [("127.0.0.1", 5353)]  # type: ignore[union-attr]
    assert Overrides().apply(policy).dns.nameservers == ["192.0.2.53:53"]


def test_bad_nameserver_flag_is_refused_before_anything_starts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "relaywarden", "run", "--nameserver", "resolver.example:53"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "--nameserver" in out.stderr
