"""`relaywarden audit`: who did what, when, to which message or subject, and why."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

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
    subject: Annotated[str, typer.Option(help="Only entries about this subject or queue id.")] = "",
    user: Annotated[str, typer.Option("--user", help="Only this operator's entries.")] = "",
    action: Annotated[str, typer.Option(help="Only this action (release, block, login…).")] = "",
    before: Annotated[
        str, typer.Option(help="Older than this entry id (printed at the end of a page).")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Entries per page.")] = 100,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """The audit log, newest first; filters search the whole stream."""
    from relaywarden.audit import AuditFilter
    from relaywarden.safetext import visible

    where = AuditFilter(since_epoch(since), user, action, subject)
    with desk_errors():
        found = open_desk(config, redis_url).audit(where, before=before or None, count=limit)
    if json_out:
        dump([asdict(e) for e in found.entries])
        return
    for e in found.entries:
        # Escaped again on output: an entry written by an older version or another
        # tool must not move the cursor or recolour the terminal.
        reason = f"  reason: {e.reason}" if e.reason else ""
        details = json.dumps(e.details, default=str, ensure_ascii=False) if e.details else ""
        line = f"{when(e.time)}  {e.actor} ({e.via})  {e.action} {e.target}{reason}  {details}"
        typer.echo(visible(line, keep=""))
    if found.older:
        typer.echo(f"(older entries: --before {found.older})")
