"""`relaywarden block|unblock|blocks|status|reset` and `relaywarden inventory set|remove|show`:
the abuse team's and the provider tooling's hands on limits, blocks and customers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from relaywarden.cli import app
from relaywarden.cli.options import AsOpt, ConfigOpt, JsonOpt, ReasonOpt, RedisOpt

SubjectArg = Annotated[
    str,
    typer.Argument(
        help="vps:ADDR, customer:ID, user:LOGIN, sender:ADDRESS; block also network:, domain:"
    ),
]

inventory_app = typer.Typer(
    help="Runtime inventory overrides in Redis (in force within [limits.inventory] refresh).",
    no_args_is_help=True,
)
app.add_typer(inventory_app, name="inventory")


def _fail(text: str) -> typer.Exit:
    typer.echo(text, err=True)
    return typer.Exit(1)


def _open(config: Path | None, redis_url: str | None) -> tuple[Any, Any, Any]:
    """The policy, a store on its Redis, and the inventory (policy, file and overrides)."""
    from relaywarden.errors import StoreError
    from relaywarden.inventory import (
        IndexedInventory,
        base_customers,
        merged,
        read_overrides,
    )
    from relaywarden.policy import PolicyError, load_policy
    from relaywarden.runtime import Overrides, _store_for

    try:
        policy = Overrides(redis_url=redis_url).apply(load_policy(config))
        store = _store_for(policy)
        base = base_customers(policy, config)
        overrides = read_overrides(store)
    except PolicyError as exc:
        raise _fail("\n".join(exc.errors)) from None
    except StoreError as exc:
        raise _fail(f"cannot reach Redis: {exc}") from None
    return policy, store, IndexedInventory(merged(base, overrides))


def _open_subject(
    text: str, config: Path | None, redis_url: str | None
) -> tuple[Any, Any, Any, Any]:
    """`_open` plus the subject parsed (a `vps:` IPv6 address becomes its /64)."""
    from relaywarden.limits.status import normalise
    from relaywarden.subjects import SubjectError, parse_subject

    policy, store, inventory = _open(config, redis_url)
    try:
        subject = parse_subject(text, policy.identity.ipv6_prefix)
        return policy, store, inventory, normalise(subject, policy)
    except SubjectError as exc:
        raise _fail(str(exc)) from None


def _block_subject(text: str, config: Path | None, redis_url: str | None) -> tuple[Any, Any]:
    """The store and the subject of a block: every kind, canonical as the milter keys it."""
    from relaywarden.subjects import SubjectError, parse_subject

    policy, store, _ = _open(config, redis_url)
    try:
        return store, parse_subject(text, policy.identity.ipv6_prefix)
    except SubjectError as exc:
        raise _fail(str(exc)) from None


def _guard(action: Any) -> Any:
    """Run a store action; a Redis failure is one line, not a traceback."""
    from relaywarden.errors import StoreError

    try:
        return action()
    except StoreError as exc:
        raise _fail(f"Redis failed: {exc}") from None


@app.command()
def block(
    subject: SubjectArg,
    for_: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 7d; 'ever' until lifted.")],
    reason: Annotated[str, typer.Option(help="Why; shown to the sender in the SMTP reply.")],
    action: Annotated[
        str, typer.Option(help="reject, tempfail, quarantine or discard.")
    ] = "reject",
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Block SUBJECT at MAIL FROM (audited)."""
    from relaywarden import blocking
    from relaywarden.audit import cli_actor
    from relaywarden.policy.durations import parse_duration

    store, target = _block_subject(subject, config, redis_url)
    try:
        duration = None if for_ == "ever" else parse_duration(for_)
        record = _guard(
            lambda: blocking.block(
                store, target, actor=cli_actor(as_), reason=reason, duration=duration, action=action
            )
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    until = "until lifted" if record.until is None else f"until {_utc(record.until)}"
    typer.echo(f"blocked {target} ({record.action}) {until}")


@app.command()
def unblock(
    subject: SubjectArg,
    reason: ReasonOpt = "",
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Lift a block on SUBJECT (audited)."""
    from relaywarden import blocking
    from relaywarden.audit import cli_actor

    store, target = _block_subject(subject, config, redis_url)
    removed = _guard(lambda: blocking.unblock(store, target, actor=cli_actor(as_), reason=reason))
    typer.echo(f"unblocked {target}" if removed else f"{target} was not blocked")


@app.command()
def blocks(
    json_: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """The blocks in force (desk, CLI, escalation): whose mail each covers, until when."""
    from dataclasses import asdict

    _, store, _ = _open(config, redis_url)
    records = _guard(store.list_blocks)
    if json_:
        rows = [{**asdict(r), "covers": r.covers} for r in records]
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in records:
        until = "until lifted" if r.until is None else f"until {_utc(r.until)}"
        line = f"{r.subject}  {r.action}  covers {r.covers}  {until}"
        typer.echo(f"{line}  by {r.set_by}: {r.reason}")
    if not records:
        typer.echo("no blocks set from the desk, the CLI or escalation")


@app.command()
def status(
    subject: SubjectArg,
    json_: JsonOpt = False,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Counters per window, effective limits and why, baseline, blocks, recent decisions."""
    from relaywarden.limits.status import subject_status
    from relaywarden.outcomes.service import outcomes_text, subject_outcomes

    policy, store, inventory, target = _open_subject(subject, config, redis_url)
    report = _guard(lambda: subject_status(store, policy, target, inventory))
    text = _text(report)
    if target.kind in ("vps", "customer", "user"):  # outcomes, complaints, login networks
        report["outcomes"] = _guard(lambda: subject_outcomes(store, policy, target).as_dict())
        text += "\n" + outcomes_text(report["outcomes"])
    typer.echo(json.dumps(report, indent=2, default=str) if json_ else text)


@app.command()
def reset(
    subject: SubjectArg,
    reason: ReasonOpt = "",
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
    restart_warmup: Annotated[
        bool,
        typer.Option(
            "--restart-warmup", help="Also forget when SUBJECT was first seen: warm up anew."
        ),
    ] = False,
) -> None:
    """Clear SUBJECT's counters, baseline and penalty (audited); warm-up only if asked."""
    from relaywarden.limits.status import reset_keys, scope_of, sender_for

    policy, store, inventory, target = _open_subject(subject, config, redis_url)
    scope = scope_of(target, policy, sender_for(target, policy, inventory))
    removed = _guard(lambda: reset_keys(store, scope, restart_warmup))
    _audited(
        store, as_, "reset", str(target), reason, keys_removed=removed,
        restart_warmup=restart_warmup,
    )  # fmt: skip
    typer.echo(f"reset {target} ({removed} keys removed)")


@inventory_app.command("set")
def inventory_set(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    plan: Annotated[str, typer.Option(help="Plan name ([plans.NAME] or 'default').")] = "default",
    network: Annotated[list[str] | None, typer.Option(help="CIDR; repeat for several.")] = None,
    sasl_user: Annotated[list[str] | None, typer.Option(help="SASL login; repeatable.")] = None,
    domain: Annotated[list[str] | None, typer.Option(help="Owned domain; repeatable.")] = None,
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Add or replace customer ID in the runtime overrides."""
    from pydantic import ValidationError

    from relaywarden.inventory import overrides_key
    from relaywarden.policy.inventory import CustomerEntry
    from relaywarden.policy.limits import plan_named

    policy, store, _ = _open(config, redis_url)
    try:
        entry = CustomerEntry(
            id=customer_id,
            plan=plan,
            networks=network or [],
            sasl_users=sasl_user or [],
            domains=domain or [],
        )
    except ValidationError as exc:
        raise _fail(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    if plan_named(policy.plans, plan) is None:
        raise _fail(
            f"unknown plan {plan!r}; defined: {', '.join(['default', *sorted(policy.plans)])}"
        )
    _guard(lambda: store.client.hset(overrides_key(store), entry.id, entry.model_dump_json()))
    _audited(store, as_, "inventory-set", f"customer:{entry.id}", **entry.model_dump())
    typer.echo(
        f"customer {entry.id} set (milters see it within {policy.limits.inventory.refresh:g}s)"
    )


@inventory_app.command("remove")
def inventory_remove(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    as_: AsOpt = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Drop customer ID's runtime override (its policy or file entry, if any, applies again)."""
    from relaywarden.inventory import overrides_key

    _, store, _ = _open(config, redis_url)
    removed = _guard(lambda: store.client.hdel(overrides_key(store), customer_id))
    _audited(store, as_, "inventory-remove", f"customer:{customer_id}")
    if not removed:
        raise _fail(f"customer {customer_id} has no runtime override")
    typer.echo(f"customer {customer_id} removed from the overrides")


@inventory_app.command("show")
def inventory_show(
    customer_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Print the inventory in force (policy, file and overrides) as JSON: one customer or all."""
    from relaywarden.inventory import read_overrides

    _, store, inventory = _open(config, redis_url)
    overridden = set(_guard(lambda: read_overrides(store)))
    rows = [
        {**c.model_dump(), "source": "override" if c.id in overridden else "policy"}
        for c in inventory.customers.values()
        if customer_id is None or c.id == customer_id
    ]
    if customer_id is not None and not rows:
        raise _fail(f"no customer {customer_id}")
    typer.echo(json.dumps(rows[0] if customer_id else rows, indent=2))


def _audited(
    store: Any, as_: str | None, action: str, target: str, reason: str = "", **details: Any
) -> None:
    """Write the audit entry of a CLI action (the services audit blocks themselves)."""
    from relaywarden import audit

    entry = audit.AuditEntry(audit.cli_actor(as_), action, target, reason[:200], details)
    _guard(lambda: audit.record(store, entry))


def _utc(epoch: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def _text(report: dict[str, Any]) -> str:
    lines = [f"{report['subject']}  customer={report['customer'] or '-'}  plan={report['plan']}"]
    eff = report.get("effective")
    if eff:
        lines.append(f"effective limits: {eff['factor']:.0%} of the plan ({'; '.join(eff['why'])})")
        warm = report["warmup"]
        lines.append(f"first seen: {_utc(warm['first_seen']) if warm['first_seen'] else 'never'}")
        base = report["baseline_per_hour"]
        lines.append(
            f"baseline per hour: {base['messages']} messages, "
            f"{base['new_recipients']} new recipients, {base['new_domains']} new domains"
        )
    for w in report["windows"]:
        lines.append(
            f"  {w['unit']:<18} {w['count']:>8} / {w['limit']:<8} per {w['window']:g}s"
            f" (plan {w['plan_limit']})"
        )
    hits = report["limit_hits"]
    lines.append(
        f"limit hits: {hits['count']} in the last {hits['period']:g}s "
        f"(block at {hits['block_after']}); automatic blocks so far: {report['automatic_blocks']}"
    )
    for b in report["blocks"]:
        until = "until lifted" if b["until"] is None else f"until {_utc(b['until'])}"
        lines.append(f"BLOCKED ({b['action']}) by {b['set_by']} {until}: {b['reason']}")
    for d in report["recent_decisions"]:
        would = f" (shadow: would {d['would_action']})" if d.get("would_action") else ""
        lines.append(f"  {d['ref']} {d['stage']} {d['action']}{would} {d['reply'] or ''}")
    return "\n".join(lines)
