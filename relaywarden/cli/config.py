"""`relaywarden check-config`: validate a policy file before it goes live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.policy import PolicyError, load_policy


@app.command("check-config")
def check_config(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The policy file to check (default: --config, $RELAYWARDEN_CONFIG,"
            " /etc/relaywarden/policy.toml, else the packaged default).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Same as FILE.", hidden=True)
    ] = None,
) -> None:
    """Exit 0 if FILE is a valid policy; else print every error (file: key: reason), exit 1."""
    from relaywarden.inventory import base_customers
    from relaywarden.policy.loader import discover_policy

    path = discover_policy(file or config)
    try:
        policy = load_policy(path)
        # The customer file the policy names is part of it: checked alike.
        base_customers(policy, path)
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: ok")
