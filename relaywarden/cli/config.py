"""`relaywarden check-config`: validate a policy file before it goes live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.policy import PolicyError, load_policy


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="The policy file to check.")],
) -> None:
    """Exit 0 if FILE is a valid policy; else print every error (file: key: reason), exit 1."""
    try:
        load_policy(file)
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: ok")
