"""`relaywarden quarantine …` and `relaywarden agent`: held messages from a terminal."""

from __future__ import annotations

import threading
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
from relaywarden.cli.options import AsOpt, ConfigOpt, JsonOpt, ReasonOpt, RedisOpt, SinceOpt
from relaywarden.cli.text import evidence_text

quarantine = typer.Typer(
    help="Messages held in Postfix's hold queue: list, show, release, delete, scan."
)
app.add_typer(quarantine, name="quarantine")

CustomerOpt = Annotated[str | None, typer.Option("--customer", help="Only this customer id.")]
VpsOpt = Annotated[
    str | None, typer.Option("--vps", help="Only this VPS (address or IPv6 prefix).")
]
RelayOpt = Annotated[
    str | None, typer.Option("--relay", help="The relay holding it, when a queue id is on several.")
]


FindingOpt = Annotated[
    str | None, typer.Option("--finding", help="Only messages with this finding (CHECK/NAME).")
]
SearchOpt = Annotated[
    str | None,
    typer.Option("--search", help="Sender, From or subject containing it, or a ref or queue id."),
]
BeforeOpt = Annotated[
    float | None,
    typer.Option("--before", help="Only messages held before this time (the next page's start)."),
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=5000, help="At most this many.")]


@quarantine.command("list")
def list_cmd(
    customer: CustomerOpt = None,
    vps: VpsOpt = None,
    finding: FindingOpt = None,
    search: SearchOpt = None,
    since: SinceOpt = None,
    before: BeforeOpt = None,
    limit: LimitOpt = 500,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Held messages, newest first; every filter applies before --limit."""
    with desk_errors():
        found = open_desk(config, redis_url).select(
            customer=customer,
            vps=vps,
            finding=finding,
            search=search,
            since=since_epoch(since),
            before=before,
            limit=limit,
        )
    if json_out:
        dump([e.as_dict() for e in found.entries])
        return
    if not found.entries:
        typer.echo("nothing held")
    for e in found.entries:
        typer.echo(
            f"{when(e.time)}  {e.queue_id}  {e.shown_state:<20} vps {e.vps}  "
            f"customer {e.customer or '-'}  <{e.sender}>  score {e.score:g}  "
            f"{','.join(e.finding_names)}  {e.subject!r}"
        )
    if found.more and found.older is not None:
        typer.echo(f"(more: add --before {found.older!r} for the next page)")


@quarantine.command("show")
def show_cmd(
    queue_id: Annotated[str, typer.Argument(help="Postfix queue id.")],
    relay: RelayOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """A held message: headers, a plain-text preview, findings, the sender's status."""
    with desk_errors():
        view = open_desk(config, redis_url).show(queue_id, relay)
    e = view.entry
    if json_out:
        dump(
            {
                "entry": e.as_dict(),
                "headers": view.preview.headers if view.preview else [],
                "preview": view.preview.text if view.preview else None,
                "preview_truncated": view.preview.truncated if view.preview else False,
                "parts": [asdict(p) for p in view.preview.parts] if view.preview else [],
                "attachments": (
                    [asdict(a) for a in view.preview.attachments] if view.preview else []
                ),
                "preview_notes": view.preview.notes if view.preview else [],
                "preview_note": view.preview_note,
                "status": asdict(view.status),
            }
        )
        return
    typer.echo(f"queue id {e.queue_id} on {e.relay}: {e.shown_state}  (ref {e.ref})")
    typer.echo(f"held     {when(e.time)}   score {e.score:g}")
    typer.echo(
        f"sender   <{e.sender}>  vps {e.vps}  customer {e.customer or '-'}"
        f"  login {e.sasl_user or '-'}"
    )
    typer.echo(f"to       {', '.join(e.recipients)} ({e.recipient_total} in all)")
    typer.echo("findings")
    for f in e.findings:
        typer.echo(f"  {f.get('check')}/{f.get('name')} score {f.get('score')}")
        if f.get("evidence"):
            typer.echo(f"    {evidence_text(f['evidence'])}")
    status = view.status
    typer.echo("status")
    for b in status.blocks:
        typer.echo(
            f"  blocked {b.subject}: {b.action} until {when(b.until)} ({b.reason}, by {b.set_by})"
        )
    for lim in status.limits:
        windows = ", ".join(
            f"{w['unit']} {w['count']}/{w['limit']} per {w['window']}s" for w in lim["windows"]
        )
        typer.echo(f"  {lim['subject']} (plan {lim['plan']}): {windows or 'no limits apply'}")
    typer.echo(f"  decisions in the last 24 h: {sum(status.per_hour)}; latest:")
    for d in status.recent[:5]:
        typer.echo(
            f"    {when(d['_time'])}  {d.get('action')}  score {d.get('score')}"
            f"  queue id {d.get('queue_id') or '-'}"
        )
    if view.preview is None:
        typer.echo(f"\n({view.preview_note})")
        return
    typer.echo("\nheaders")
    for name, value in view.preview.headers:
        typer.echo(f"  {name}: {value}")
    for note in view.preview.notes:
        typer.echo(f"({note})")
    typer.echo("\nattachments" + ("" if view.preview.attachments else ": none"))
    for a in view.preview.attachments:
        warn = f"  !! {'; '.join(a.warnings)}" if a.warnings else ""
        typer.echo(
            f"  {a.filename}  declared {a.declared}  detected {a.detected}  {a.size} B{warn}"
        )
    for part in view.preview.parts:
        typer.echo(
            f"\n--- {part.content_type} part"
            + (" (converted to text)" if part.content_type == "text/html" else "")
            + " ---"
        )
        typer.echo(part.text)
        for shown, target in part.links:
            typer.echo(f"  link {shown!r} -> {target}")
    if view.preview.truncated:
        typer.echo("[… truncated]")


def _act(
    action: str,
    queue_ids: list[str],
    vps: str | None,
    customer: str | None,
    relay: str | None,
    yes: bool,
    reason: str,
    actor: str | None,
    config: ConfigOpt,
    redis_url: str | None,
) -> None:
    from relaywarden.audit import cli_actor
    from relaywarden.desk.postfix import check_queue_id

    if bool(queue_ids) == bool(vps or customer):
        raise typer.BadParameter(
            "give queue ids, or --vps/--customer for everything held for one sender"
        )
    with desk_errors():
        for qid in queue_ids:  # every id checked before anything is done
            check_queue_id(qid)
        desk = open_desk(config, redis_url)
        if queue_ids:
            entries = [desk.find(qid, relay) for qid in queue_ids]
        else:
            entries = desk.held_for(vps=vps, customer=customer)
        if not entries:
            typer.echo("nothing held for that sender")
            return
        if not yes and not (len(queue_ids) == 1 and len(entries) == 1):
            # One queue id named on the command line is its own confirmation.
            for e in entries:
                typer.echo(f"  {e.queue_id} on {e.relay}  <{e.sender}>  {e.subject!r}")
            typer.confirm(f"{action} {len(entries)} message(s)?", abort=True)
        who = cli_actor(actor)
        failed = 0
        for e in entries:
            act = desk.release if action == "release" else desk.delete
            result = act(e, actor=who, reason=reason, via="cli")
            failed += result.result == "failed"
            typer.echo(
                f"{result.queue_id} on {result.relay}: {action} {result.result}"
                + (f" ({result.detail})" if result.detail else "")
            )
    if failed:
        raise typer.Exit(1)


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Postfix queue ids.")]


def _queue_command(action: str, doc: str) -> None:
    """`quarantine release` and `quarantine delete`: the same options, one action each."""

    def command(
        queue_ids: IdsArg = None,
        vps: VpsOpt = None,
        customer: CustomerOpt = None,
        relay: RelayOpt = None,
        yes: YesOpt = False,
        reason: ReasonOpt = "",
        actor: AsOpt = None,
        config: ConfigOpt = None,
        redis_url: RedisOpt = None,
    ) -> None:
        _act(action, queue_ids or [], vps, customer, relay, yes, reason, actor, config, redis_url)

    command.__doc__ = doc
    quarantine.command(action)(command)


_queue_command("release", "Release held messages: out of the hold queue and delivered now.")
_queue_command("delete", "Delete held messages from the hold queue (nothing is sent).")


@quarantine.command("scan")
def scan_cmd(
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Make the index and this relay's hold queue agree: file held messages the
    index does not know, mark entries whose message is gone (the agent runs this
    every [quarantine] scan_interval)."""
    from relaywarden.desk.scan import QueueUnreadable

    with desk_errors():
        desk = open_desk(config, redis_url)
        try:
            report = desk.scan()
        except QueueUnreadable as exc:
            # Not "nothing held": the queue could not be read, nothing was changed.
            typer.echo(f"error: {exc} (run as root or the postfix user?)", err=True)
            raise typer.Exit(1) from None
    if json_out:
        dump(asdict(report))
        return
    typer.echo(
        f"relay {desk.relay}: {report.held} held, {report.known} indexed; "
        f"{len(report.added)} filed anew, {len(report.gone)} marked gone"
    )
    for qid in report.added:
        typer.echo(f"  filed  {qid}")
    for qid in report.gone:
        typer.echo(f"  gone   {qid}")
    for qid in report.unreadable:
        typer.echo(f"  (could not read the content of {qid}: filed without Subject/From)")


@app.command()
def agent(config: ConfigOpt = None, redis_url: RedisOpt = None) -> None:
    """Apply release/delete actions queued in Redis for this relay, until SIGTERM."""
    import signal

    from relaywarden.decisionlog import setup_logging

    desk = open_desk(config, redis_url)
    setup_logging("info")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    typer.echo(f"desk agent for relay {desk.relay}", err=True)
    from relaywarden.daemon import notify

    notify.ready(f"desk agent for relay {desk.relay}")
    desk.serve_jobs(stop)
