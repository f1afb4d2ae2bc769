"""The `relaywarden` command. Each submodule adds its commands to `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="relaywarden",
    help="RelayWarden: the milter that keeps a VPS provider's outbound relay clean.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich markup would eat "[dns]", "[[web.users]]" and every other
    # policy section a help text names.
    rich_markup_mode=None,
)

# Imported for their side effect of registering commands on `app`.
from relaywarden.cli import (  # noqa: E402,F401
    audit,
    campaigns,
    complaints,
    config,
    demo,
    limits,
    quarantine,
    ref,
    replay,
    run,
    trace,
    watch,
    web,
)


def _plain_help(typer_app: typer.Typer) -> None:
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            group.typer_instance.rich_markup_mode = None
            _plain_help(group.typer_instance)


_plain_help(app)  # command groups (quarantine, inventory, web...) too, wherever defined


def main() -> None:
    app()
