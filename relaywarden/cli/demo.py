"""`relaywarden demo`: see it work on this machine in under a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relaywarden.cli import app


@app.command()
def demo(
    policy: Annotated[
        Path | None, typer.Option(help="Policy file (default: policies/demo.toml).")
    ] = None,
    web: Annotated[
        bool, typer.Option("--web", help="Then serve the abuse team's desk until Ctrl-C.")
    ] = False,
) -> None:
    """Start Redis, a sink, the milter and a private Postfix on loopback; send a traffic mix."""
    from relaywarden.demo import DEMO_POLICY, run_demo

    run_demo(policy or DEMO_POLICY, echo=typer.echo, web=web)
