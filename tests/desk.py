"""Helpers for the desk tests: a policy pointing the desk at a running stack, and
messages the e2e policy quarantines (sender promo@shop.example)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.stack import Stack
from relaywarden.web.auth import hash_password
from tests.conftest import E2E_POLICY
from tests.mail import message

HELD_SENDER = "promo@shop.example"
PASSWORDS = {"olga": "operator-pass-1", "victor": "viewer-pass-1"}
_HASHES = {name: hash_password(pw) for name, pw in PASSWORDS.items()}


def desk_policy(
    stack: Stack, path: Path, *, relay_name: str = "", extra: str = "", web: str = ""
) -> Path:
    """The e2e policy plus where this stack's Postfix lives and two web users;
    `web` adds lines to its [web] table (which allows the test client's Host)."""
    assert stack.postfix is not None
    relay = f'relay_name = "{relay_name}"\n' if relay_name else ""
    users = "".join(
        f'\n[[web.users]]\nname = "{name}"\nrole = "{role}"\npassword_hash = "{_HASHES[name]}"\n'
        for name, role in (("olga", "operator"), ("victor", "viewer"))
    )
    path.write_text(
        E2E_POLICY.read_text()
        + f'\n[quarantine]\npostfix_config_dir = "{stack.postfix.config_dir}"\n{relay}'
        + f'\n[web]\nallowed_hosts = ["testserver"]\n{web}\n'
        + users
        + extra
    )
    return path


def hold(
    stack: Stack,
    subject: str,
    *,
    client: str = "203.0.113.7",
    login: str = "",
    from_header: bytes | None = None,
    body: bytes | None = None,
    extra_headers: list[bytes] | None = None,
) -> str:
    """Send a message the policy quarantines; returns its queue id once it is held."""
    data = message(
        HELD_SENDER, subject=subject, from_header=from_header, extra_headers=extra_headers
    )
    if body is not None:
        data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body
    result = stack.send(HELD_SENDER, ["buyer@example.org"], data, client=client, login=login)
    assert stack.fate(result).fate == "held", result
    assert result.queue_id
    return result.queue_id


def cli(
    policy: Path, redis_url: str, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`relaywarden ARGS --config POLICY --redis-url URL` as an operator would type it."""
    opts = ["--config", str(policy), "--redis-url", redis_url]
    # Options go before a "--" (after it everything is an argument).
    cut = args.index("--") if "--" in args else len(args)
    argv = [sys.executable, "-m", "relaywarden", *args[:cut], *opts, *args[cut:]]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        input=input,
        check=False,
    )
