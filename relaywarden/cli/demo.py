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
    try:
        import dnslib  # noqa: F401
    except ImportError:
        typer.echo(
            "relaywarden demo needs the demo extra (a DNS server for the demo zones):"
            " pip install 'relaywarden[demo]', or run `make demo` in a checkout",
            err=True,
        )
        raise typer.Exit(2) from None
    from relaywarden.demo import DEMO_POLICY, run_demo

    run_demo(policy or DEMO_POLICY, echo=typer.echo, web=web)
