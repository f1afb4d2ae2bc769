"""`relaywarden complaints`: the ARF / abuse@ listener, and the complaints kept."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.options import ConfigOpt, JsonOpt, RedisOpt

if TYPE_CHECKING:
    from relaywarden.policy import Policy
    from relaywarden.store import RedisStore

complaints_app = typer.Typer(help="Complaints: the ARF listener and what it kept.")
app.add_typer(complaints_app, name="complaints")


def _open(config: Path | None, redis_url: str | None) -> tuple[Policy, RedisStore]:
    from relaywarden.policy import PolicyError, load_policy
    from relaywarden.runtime import Overrides, _store_for

    try:
        policy = Overrides(redis_url=redis_url).apply(load_policy(config))
    except PolicyError as exc:
        typer.echo("\n".join(exc.errors), err=True)
        raise typer.Exit(1) from None
    return policy, _store_for(policy)


@complaints_app.command("listen")
def listen(
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
    address: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT; overrides [complaints] listen.")
    ] = None,
) -> None:
    """Accept RFC 5965 feedback reports and forwards by SMTP until SIGTERM/SIGINT."""
    from relaywarden.complaints.listener import start
    from relaywarden.decisionlog import setup_logging

    policy, store = _open(config, redis_url)
    if address:
        policy = policy.model_copy(
            update={"complaints": policy.complaints.model_copy(update={"listen": address})}
        )
    setup_logging(policy.log.level)
    controller = start(store, policy)
    typer.echo(f"complaints listener on {policy.complaints.listen}", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


@complaints_app.command("maildir")
def maildir(
    directory: Annotated[Path, typer.Argument(help="The Maildir (with new/ and cur/).")],
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    every: Annotated[float, typer.Option(help="Seconds between passes.")] = 10.0,
) -> None:
    """Read complaints delivered to a Maildir: each new message is recorded, then moved to cur/."""
    from relaywarden.complaints.maildir import read_maildir
    from relaywarden.decisionlog import setup_logging

    policy, store = _open(config, redis_url)
    setup_logging(policy.log.level)
    if not (directory / "new").is_dir():
        raise typer.BadParameter(f"{directory} has no new/ directory", param_hint="DIRECTORY")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while True:
        done = read_maildir(store, policy, directory)
        if once:
            from relaywarden.outcomes.notify import NOTIFIER

            NOTIFIER.drain()  # warning notices go out before the process exits
            typer.echo(json.dumps(done.__dict__))
            return
        if stop.wait(max(every, 0.5)):
            return


@complaints_app.command("list")
def list_(
    json_: JsonOpt = False,
    subject: Annotated[str | None, typer.Option(help="Only those attributed to SUBJECT.")] = None,
    count: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Complaints kept, attributed or not, newest first."""
    from relaywarden.complaints.service import recent
    from relaywarden.subjects import SubjectError, parse_subject

    _, store = _open(config, redis_url)
    try:
        target = parse_subject(subject) if subject else None
    except SubjectError as exc:
        raise typer.BadParameter(str(exc), param_hint="--subject") from None
    entries = recent(store, count, target)
    if json_:
        typer.echo(json.dumps(entries, indent=2, default=str))
        return
    for e in entries:
        who = ", ".join(e.get("subjects", [])) or "unattributed"
        typer.echo(
            f"{e.get('feedback', {}).get('Feedback-Type', e['kind']):10} {who:40} "
            f"{e.get('original', {}).get('Subject', '')[:40]!r} {'; '.join(e.get('problems', []))}"
        )
