"""Options every command that reads the policy or Redis takes, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _discover(value: Path | None) -> Path:
    from relaywarden.policy.loader import discover_policy

    return discover_policy(value)


# Every command finds its policy the same way; the callback turns "not given"
# into the discovered path, so a command never sees None.
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="RELAYWARDEN_CONFIG",
        show_envvar=False,
        callback=_discover,
        help=(
            "Policy file (default: $RELAYWARDEN_CONFIG, else /etc/relaywarden/policy.toml"
            " if it exists, else the packaged default)."
        ),
    ),
]
RedisOpt = Annotated[
    str | None, typer.Option("--redis-url", help="Redis URL; overrides the policy's Redis url.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only the last DURATION, e.g. 30m, 2h, 7d.")
]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Acting operator for the audit log (default: login name)."),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, for the audit log.")]
