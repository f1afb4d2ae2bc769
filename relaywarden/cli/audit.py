"""`relaywarden audit`: who did what, when, to which message or subject, and why."""

from __future__ import annotations

from dataclasses import asdict

import typer

from relaywarden.cli import app
from relaywarden.cli.desk import (
    desk_errors,
    dump,
    open_desk,
    since_epoch,
    when,
)
from relaywarden.cli.options import ConfigOpt, JsonOpt, RedisOpt, SinceOpt


@app.command("audit")
def audit_cmd(
    since: SinceOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """The audit log, newest first."""
    with desk_errors():
        entries = open_desk(config, redis_url).audit(since_epoch(since))
    if json_out:
        dump([asdict(e) for e in entries])
        return
    for e in entries:
        reason = f"  reason: {e.reason}" if e.reason else ""
        typer.echo(
            f"{when(e.time)}  {e.actor} ({e.via})  {e.action} {e.target}{reason}  {e.details}"
        )
