"""`relaywarden replay`: recorded traffic through the current policy, what would change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from relaywarden.cli import app
from relaywarden.cli.options import ConfigOpt, JsonOpt, RedisOpt


@app.command()
def replay(
    source: Annotated[
        str,
        typer.Argument(
            help="A directory of .eml files (envelope in NAME.json beside each), a JSON-lines"
            " file of decision records (the milter's log), or 'stream' for the Redis"
            " decision stream."
        ),
    ],
    limit: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Replay at most this many records.")
    ] = 10_000,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns", help="Look up sender domains and DMARC with the policy's [dns] (live)."
        ),
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Decide recorded messages again with the current policy; print what would change
    (accepted -> held, ...) and the findings, counted. No Postfix; counters untouched."""
    from relaywarden.cli.desk import policy_or_exit
    from relaywarden.inventory import IndexedInventory, base_customers
    from relaywarden.policy import PolicyError
    from relaywarden.rollout import replay as rp

    policy = policy_or_exit(config)
    try:
        inventory = IndexedInventory(base_customers(policy, config))
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    resolver = None
    if dns:
        from relaywarden.runtime import _resolver_for

        resolver = _resolver_for(policy)
    path = Path(source)
    if source == "stream":
        from relaywarden.errors import StoreError
        from relaywarden.runtime import Overrides, _store_for

        store = _store_for(Overrides(redis_url=redis_url).apply(policy))
        try:
            # Oldest first, as they happened; bounded by --limit.
            events = list(reversed(store.recent_events(limit + 1)))
        except StoreError as exc:
            typer.echo(f"cannot read the decision stream: {exc}", err=True)
            raise typer.Exit(1) from None
        cases = rp.cases_from_events(events)
    elif path.is_dir():
        cases = rp.cases_from_dir(path, limit + 1)
    elif path.is_file():
        cases = rp.cases_from_jsonl(path, limit + 1)
    else:
        typer.echo(f"{source}: no such file or directory (or 'stream')", err=True)
        raise typer.Exit(2)
    report = rp.replay(cases, policy, inventory, resolver, limit)
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(rp.render(report))
