"""`relaywarden watch`: follow Postfix's log and count delivery outcomes."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated, Any

import typer

from relaywarden.cli import app
from relaywarden.cli.options import ConfigOpt, RedisOpt


@app.command()
def watch(
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
    log_file: Annotated[
        str | None,
        typer.Option(help="Postfix's log (maillog_file or a syslog file); overrides the policy."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Read to the current end of the log, print totals, exit.")
    ] = False,
) -> None:
    """Follow Postfix's log: delivered, deferred, bounced and unknown recipients per
    VPS, customer and login; failed SASL logins per address. Resumes where it
    stopped (position kept in Redis per relay). SIGTERM/SIGINT stop it."""
    from relaywarden.decisionlog import setup_logging
    from relaywarden.errors import StoreError
    from relaywarden.outcomes.notify import NOTIFIER
    from relaywarden.outcomes.service import warner
    from relaywarden.outcomes.watcher import Watcher
    from relaywarden.policy import PolicyError, load_policy
    from relaywarden.runtime import Overrides, _store_for

    try:
        policy = Overrides(redis_url=redis_url).apply(load_policy(config))
    except PolicyError as exc:
        typer.echo("\n".join(exc.errors), err=True)
        raise typer.Exit(1) from None
    setup_logging(policy.log.level)
    store = _store_for(policy)
    try:
        watcher = Watcher(store, policy, log_file, notify=warner(store, policy))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if once:
        try:
            totals = watcher.run_once()
        except StoreError as exc:
            typer.echo(f"Redis failed: {exc}", err=True)
            raise typer.Exit(1) from None
        NOTIFIER.drain()
        report: dict[str, Any] = {
            "lines": totals.lines,
            "deliveries": totals.deliveries,
            "unattributed": totals.unattributed,
            "auth_failures": totals.auth_failures,
            "unknown_lines": totals.unknown,
        }
        typer.echo(json.dumps(report))
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher.run(stop)
