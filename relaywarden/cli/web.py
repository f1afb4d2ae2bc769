"""`relaywarden web`: the abuse team's web page; `relaywarden web hash-password`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.desk import policy_or_exit
from relaywarden.cli.options import ConfigOpt, RedisOpt

web = typer.Typer(help="The abuse team's web page.", invoke_without_command=True)
app.add_typer(web, name="web")


@web.callback()
def serve(
    ctx: typer.Context,
    listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT to serve on (default: [web] listen, 127.0.0.1:8025)."),
    ] = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Serve the desk until Ctrl-C. Users and roles come from [[web.users]] in the policy."""
    if ctx.invoked_subcommand is not None:
        return
    from relaywarden.daemon.asgi import serve as serve_notifying
    from relaywarden.desk.service import Desk
    from relaywarden.web.app import create_app

    policy = policy_or_exit(config)
    if not policy.web.users:
        typer.echo("no [[web.users]] in the policy: nobody could log in", err=True)
        raise typer.Exit(2)
    host, _, port = (listen or policy.web.listen).rpartition(":")
    application = create_app(Desk.from_policy(policy, redis_url, config), policy.web)
    typer.echo(f"RelayWarden desk on http://{host}:{port}/", err=True)
    serve_notifying(  # uvicorn.run, plus systemd readiness
        application,
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


@web.command("hash-password")
def hash_password_cmd(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Print an argon2 hash for a [[web.users]] password_hash."""
    from relaywarden.web.auth import hash_password

    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("use at least 8 characters", err=True)
        raise typer.Exit(2)
    typer.echo(hash_password(password))
