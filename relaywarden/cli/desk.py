"""Options and helpers shared by the abuse team's commands (quarantine, audit, web, agent)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from relaywarden.policy import Policy, PolicyError, load_policy
from relaywarden.policy.durations import parse_duration

if TYPE_CHECKING:
    from relaywarden.desk.service import Desk


def policy_or_exit(config: Path | None) -> Policy:
    try:
        return load_policy(config)
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None


def open_desk(config: Path | None, redis_url: str | None) -> Desk:
    from relaywarden.desk.service import Desk

    return Desk.from_policy(policy_or_exit(config), redis_url, config)


def since_epoch(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return time.time() - parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def dump(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


@contextmanager
def desk_errors() -> Iterator[None]:
    """Operator mistakes and outages as one line and exit 1, not a traceback."""
    from relaywarden.desk.postfix import PostfixError, QueueIdError
    from relaywarden.desk.service import DeskError
    from relaywarden.errors import StoreError
    from relaywarden.subjects import SubjectError

    try:
        yield
    except (DeskError, QueueIdError, SubjectError, PostfixError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
