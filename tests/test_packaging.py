"""docker-compose.yml, as `docker compose config` reads it (no engine runs here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from relaywarden.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_file_is_valid() -> None:
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "milter:" in out.stdout and "agent:" in out.stdout
    # Release needs the relay's queue: the agent has it, read-write, as root.
    agent = out.stdout.split("  agent:", 1)[1].split("\n  milter:", 1)[0]
    assert "/var/spool/postfix:/var/spool/postfix:rw" in agent and "user: root" in agent
    # Notice mail goes to the host's Postfix, not to the container itself.
    assert "host.docker.internal:host-gateway" in out.stdout
    assert "/dist/docker/policy.toml:/etc/relaywarden/policy.toml:ro" in out.stdout


def test_the_compose_policy_points_at_the_host_and_the_compose_redis() -> None:
    policy = load_policy(ROOT / "dist" / "docker" / "policy.toml")
    assert policy.limits.escalation.email.relay == "host.docker.internal:25"
    assert policy.redis.url == "redis://redis:6379/0"
