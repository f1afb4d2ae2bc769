"""The `relaywarden` command. Each submodule adds its commands to `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="relaywarden",
    help="RelayWarden: the milter that keeps a VPS provider's outbound relay clean.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Imported for their side effect of registering commands on `app`.
from relaywarden.cli import (  # noqa: E402,F401
    audit,
    campaigns,
    complaints,
    config,
    demo,
    limits,
    quarantine,
    run,
    trace,
    watch,
    web,
)


def main() -> None:
    app()
