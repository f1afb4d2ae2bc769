"""`relaywarden run`: the milter daemon."""

from __future__ import annotations

from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.options import ConfigOpt, RedisOpt
from relaywarden.policy import PolicyError


@app.command()
def run(
    config: ConfigOpt = None,
    listen: Annotated[
        str | None,
        typer.Option(help="Milter socket: inet:PORT@HOST, inet6:PORT@HOST or unix:/path."),
    ] = None,
    redis_url: RedisOpt = None,
    nameserver: Annotated[
        list[str] | None,
        typer.Option(help="DNS server HOST:PORT, repeatable; overrides [dns] nameservers."),
    ] = None,
) -> None:
    """Run the milter until SIGTERM or SIGUSR2; SIGUSR1 (or SIGHUP) reloads the policy."""
    from pydantic import ValidationError

    from relaywarden.decisionlog import setup_logging
    from relaywarden.milter.server import run as serve
    from relaywarden.policy.forgery import DnsSection
    from relaywarden.runtime import Overrides, Runtime

    try:
        DnsSection(nameservers=nameserver or [])
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise typer.BadParameter(reason, param_hint="--nameserver") from None
    try:
        runtime = Runtime.start(
            config, Overrides(listen=listen, redis_url=redis_url, nameservers=nameserver or [])
        )
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    setup_logging(runtime.policy.log.level)
    raise typer.Exit(serve(runtime))
