"""`relaywarden trace TOKEN`: from the relay's trace header back to the transaction."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from relaywarden.cli import app
from relaywarden.cli.desk import dump, policy_or_exit, when
from relaywarden.cli.options import ConfigOpt, JsonOpt, RedisOpt
from relaywarden.errors import StoreError

TokenArg = Annotated[str, typer.Argument(help="The value of the relay's trace header.")]


@app.command("trace")
def trace_cmd(
    token: TokenArg,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Verify a trace token and show its transaction: relay, queue id, time, decision."""
    from relaywarden import trace
    from relaywarden.store import RedisStore, connect
    from relaywarden.trace.record import lookup

    policy = policy_or_exit(config)
    info = trace.verify(token, policy.trace)
    if info is None:
        typer.echo("error: not a trace token made with this policy's [[trace.keys]]", err=True)
        raise typer.Exit(1)
    client = connect(redis_url or policy.redis.client_url, max(policy.redis.timeout, 5.0))
    store = RedisStore(client, policy.redis.key_prefix, policy.redis.events_maxlen)
    problem = ""
    try:
        record = lookup(store, info)
    except StoreError as exc:
        record, problem = None, str(exc)
    if json_out:
        dump({**asdict(info), "decision": record, "error": problem or None})
    else:
        _show(info, record)
    if problem:
        typer.echo(f"error: decision not available: {problem}", err=True)
        raise typer.Exit(1)


def _show(info: Any, record: dict[str, Any] | None) -> None:
    typer.echo(f"relay:     {info.relay}")
    typer.echo(f"queue id:  {info.queue_id}")
    typer.echo(f"time:      {when(info.time)}")
    typer.echo(f"key:       {info.key_id}")
    if record is None:
        typer.echo("decision:  not recorded (older than [trace] retention, or never decided)")
        return
    typer.echo(f"customer:  {record.get('customer') or '-'}")
    typer.echo(f"vps:       {record.get('vps') or '-'}")
    typer.echo(f"login:     {record.get('sasl_user') or '-'}")
    sender = record.get("sender") or record.get("sender_domain") or "-"
    typer.echo(f"sender:    {sender}")
    typer.echo(f"decision:  {record.get('action')} (score {record.get('score')})")
    findings = ", ".join(str(f) for f in record.get("findings", [])) or "none"
    typer.echo(f"findings:  {findings}")
    typer.echo(f"ref:       {record.get('ref')}")
