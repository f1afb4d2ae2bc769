"""`relaywarden ref RW-XXXXXXXXXX`: the decision a customer's reference names."""

from __future__ import annotations

from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.desk import desk_errors, dump, open_desk, when
from relaywarden.cli.options import ConfigOpt, JsonOpt, RedisOpt


@app.command("ref")
def ref_cmd(
    ref: Annotated[str, typer.Argument(help="The reference, e.g. RW-ABCDEFGHIJ.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Find any decision by its reference (accepted, rejected, deferred or held)."""
    from relaywarden.desk.refs import RefError
    from relaywarden.safetext import visible

    try:
        with desk_errors():
            found, held = open_desk(config, redis_url).reference(ref)
    except RefError as exc:
        raise typer.BadParameter(str(exc), param_hint="REF") from None
    if json_out:
        dump({"ref": found.ref, "decisions": found.decisions,
              "held": [e.as_dict() for e in held]})  # fmt: skip
        return
    if not found.decisions:
        typer.echo(
            f"{found.ref}: no decision in the event stream ({found.scanned} events searched; "
            "older ones may have been trimmed by [redis] events_maxlen)"
        )
        raise typer.Exit(1)
    for d in found.decisions:
        who = d.get("sender") or d.get("sender_domain") or "-"
        findings = ", ".join(f"{f.get('check')}/{f.get('name')}" for f in d.get("findings", []))
        line = (
            f"{when(d['_time'])}  {found.ref}  {d.get('action')} at {d.get('stage')}"
            f"  queue id {d.get('queue_id') or '-'}  vps {d.get('vps')}"
            f"  customer {d.get('customer') or '-'}  sender {who}"
            f"  reply {d.get('reply') or '-'}  findings {findings or '-'}"
        )
        typer.echo(visible(line, keep=""))
    for e in held:
        typer.echo(f"held: queue id {e.queue_id} on {e.relay}: {e.shown_state}"
                   f" (relaywarden quarantine show {e.queue_id})")  # fmt: skip
