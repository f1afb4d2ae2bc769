"""Options every command that reads the policy or Redis takes, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Policy file (default: policies/default.toml)."),
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
