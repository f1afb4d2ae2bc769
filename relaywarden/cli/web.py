"""`relaywarden web`: the abuse team's web page; `relaywarden web hash-password`,
`new-token` (a service account's API token) and `unlock` (lift the login throttle)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.desk import desk_errors, open_desk, policy_or_exit
from relaywarden.cli.options import AsOpt, ConfigOpt, ReasonOpt, RedisOpt

web = typer.Typer(help="The abuse team's web page.", invoke_without_command=True)
app.add_typer(web, name="web")
log = logging.getLogger("relaywarden.web")


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
    """Serve the desk until Ctrl-C; SIGHUP reloads the policy (users, roles, limits)."""
    if ctx.invoked_subcommand is not None:
        return
    import signal

    from relaywarden.daemon.asgi import serve as serve_notifying
    from relaywarden.decisionlog import setup_logging
    from relaywarden.desk.service import Desk
    from relaywarden.web.app import create_app, use_policy

    policy = policy_or_exit(config)
    if not policy.web.users and not policy.web.service_accounts:
        typer.echo("no [[web.users]] in the policy: nobody could log in", err=True)
        raise typer.Exit(2)
    address = listen or policy.web.listen
    host, _, port = address.rpartition(":")
    web_cfg = policy.web.model_copy(update={"listen": address})
    application = create_app(Desk.from_policy(policy, redis_url, config), web_cfg)
    setup_logging("info")  # logins, failures and desk actions go to the log as well

    def reload(*_: object) -> None:
        try:
            new = _load(config)
        except Exception as exc:  # a broken file keeps the policy in force
            log.error("policy reload failed, keeping the old one: %s", exc)
            return
        cfg = new.web.model_copy(update={"listen": address})
        use_policy(application, Desk.from_policy(new, redis_url, config), cfg)
        log.info("policy reloaded: %d web users", len(cfg.users))

    signal.signal(signal.SIGHUP, reload)
    typer.echo(f"RelayWarden desk on http://{host}:{port}/", err=True)
    serve_notifying(  # uvicorn.run, plus systemd readiness
        application,
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    from relaywarden.policy import load_policy

    return load_policy(config)


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


@web.command("new-token")
def new_token_cmd() -> None:
    """A random API token for a [[web.service_accounts]] entry, and its token_sha256.

    Give the token to the automation (Authorization: Bearer TOKEN); put only the
    hash in the policy."""
    import hashlib
    import secrets

    token = secrets.token_urlsafe(32)
    typer.echo(f"token        {token}")
    typer.echo(f"token_sha256 {hashlib.sha256(token.encode()).hexdigest()}")


@web.command("unlock")
def unlock_cmd(
    user: Annotated[str, typer.Argument(help="The user name whose logins are throttled.")],
    address: Annotated[
        str | None, typer.Option(help="Only from this client address (default: every one).")
    ] = None,
    reason: ReasonOpt = "",
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Lift the login throttle for USER (audited)."""
    from relaywarden import audit
    from relaywarden.web.auth import Auth

    with desk_errors():
        desk = open_desk(config, redis_url)
        assert desk.policy is not None
        removed = Auth(desk.store, desk.policy.web).lift(user, address)
        audit.record(
            desk.store,
            audit.AuditEntry(
                actor=audit.cli_actor(as_),
                action="unlock-login",
                target=f"user:{user}" + (f" from {address}" if address else ""),
                reason=reason,
                details={"keys_removed": removed},
            ),
        )
    typer.echo(f"login throttle lifted for {user} ({removed} counters removed)")
