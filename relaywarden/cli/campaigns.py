"""`relaywarden campaigns`: the same message from many senders; block or release one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from relaywarden.audit import cli_actor
from relaywarden.cli import app
from relaywarden.cli.desk import dump, policy_or_exit, when
from relaywarden.cli.options import AsOpt, ConfigOpt, JsonOpt, ReasonOpt, RedisOpt
from relaywarden.content import campaigns
from relaywarden.errors import StoreError
from relaywarden.policy import Policy
from relaywarden.store import RedisStore, connect

group = typer.Typer(help="Campaigns: one message sent by many VPSes or customers.")
app.add_typer(group, name="campaigns")


def _open(config: Path | None, redis_url: str | None) -> tuple[Policy, RedisStore]:
    policy = policy_or_exit(config)
    client = connect(redis_url or policy.redis.client_url, max(policy.redis.timeout, 5.0))
    return policy, RedisStore(client, policy.redis.key_prefix, policy.redis.events_maxlen)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (campaigns.CampaignError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@group.command("list")
def list_cmd(
    json_out: JsonOpt = False, config: ConfigOpt = None, redis_url: RedisOpt = None
) -> None:
    """Active campaigns, most recently seen first."""
    _, store = _open(config, redis_url)
    with _errors():
        found = campaigns.active(store)
    if json_out:
        dump([c.as_dict() for c in found])
        return
    for c in found:
        state = "BLOCKED " if c.blocked else ""
        typer.echo(
            f"{c.id}  {state}{c.vpses} VPS  {c.customers} customers  {c.recipients} rcpts  "
            f"{c.messages} msgs  first {when(c.first_seen)}  {c.subject!r}  from {c.sender}"
        )


@group.command("block")
def block_cmd(
    campaign: str,
    reason: ReasonOpt = "",
    actor: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Refuse every copy of CAMPAIGN, from every customer, until released."""
    done = _act(campaigns.block, campaign, reason, actor, config, redis_url)
    typer.echo(f"blocked campaign {done.id} ({done.subject!r}, {done.vpses} VPSes)")


@group.command("release")
def release_cmd(
    campaign: str,
    reason: ReasonOpt = "",
    actor: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Lift the block on CAMPAIGN."""
    done = _act(campaigns.release, campaign, reason, actor, config, redis_url)
    typer.echo(f"released campaign {done.id}")


def _act(
    action: Callable[..., campaigns.Campaign],
    campaign: str,
    reason: str,
    actor: str | None,
    config: Path | None,
    redis_url: str | None,
) -> campaigns.Campaign:
    """Block or release through the audited service function, with the CLI's errors."""
    policy, store = _open(config, redis_url)
    with _errors():
        return action(
            store, campaign, actor=cli_actor(actor), reason=reason, window=policy.campaigns.window
        )
