"""A SASL login used from too many client networks: a stolen password.

At MAIL FROM of an authenticated message the login's network (IPv4 /24, IPv6
/48 by default) is recorded and the login's networks of the window come back,
on the MAIL FROM pipeline (relaywarden/lua/logins.lua; no round trip of its
own). More than `[logins] max_networks` is a finding with a forced action; the
end-of-message hook then blocks `user:LOGIN` and tells the abuse team
(relaywarden/logins/block.py). An office behind one NAT, or a customer's VPS and
laptop, are one or two networks and never come near the threshold.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import redis

from relaywarden.checks import Check, Context, Stage
from relaywarden.identity import Sender
from relaywarden.keys import digest
from relaywarden.limits import scripts
from relaywarden.limits.fetch import MAIL_READS, PendingRead
from relaywarden.logins import geo
from relaywarden.message import IPAddress, Message
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.policy.outcomes import LoginsSection
from relaywarden.store import RedisStore
from relaywarden.verdict import Action, Finding, RejectReply, Reply, TempFailReply

NAME = "logins"
NOTE = "login_networks"  # Message.notes: the login's Spread
CAP_FACTOR = 4  # networks kept per login: a few times the threshold, for the evidence
SHOWN = 10  # newest networks read back at MAIL FROM, for the evidence


@dataclass(frozen=True)
class Spread:
    count: int  # distinct networks in the window (at most the cap)
    newest: list[tuple[str, float]]  # (network, last seen), newest last


def network_of(address: IPAddress, cfg: LoginsSection) -> str:
    prefix = cfg.ipv4_prefix if address.version == 4 else cfg.ipv6_prefix
    return str(ipaddress.ip_network((address, prefix), strict=False))


def networks_key(prefix: str, login: str) -> str:
    return f"{prefix}:login:{{{digest('user:' + login)}}}:nets"


@dataclass
class LoginRead:
    policy: Policy
    message: Message
    key: str
    network: str
    clock: str

    def queue(self, pipe: redis.client.Pipeline) -> int:
        cfg = self.policy.logins
        spec = {
            "m": self.network,
            "w": cfg.window,
            "cap": cfg.max_networks * CAP_FACTOR + 1,
            "show": SHOWN,
        }
        scripts.evalsha(pipe, "logins", [self.key], [self.clock, json.dumps(spec)])
        return 1

    def take(self, replies: list[Any], now: float) -> None:
        (reply,) = replies
        flat = [v.decode() if isinstance(v, bytes) else str(v) for v in reply[2]]
        newest = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
        self.message.notes[NOTE] = Spread(int(reply[1]), newest)


def mail_read(
    policy: Policy, sender: Sender, message: Message, store: RedisStore
) -> PendingRead | None:
    cfg = policy.logins
    if not cfg.enabled or not sender.sasl_user or message.client_address is None:
        return None
    from relaywarden.checks.limits import _TEST_CLOCK  # the same injected clock as the limits

    return LoginRead(
        policy,
        message,
        networks_key(store.keys.prefix, sender.sasl_user),
        network_of(message.client_address, cfg),
        _TEST_CLOCK,
    )


def explain(login: str, count: int, cfg: LoginsSection) -> str:
    return (
        f"user:{login} sent from {count} client networks in the last "
        f"{format_duration(cfg.window)}; the threshold is {cfg.max_networks}"
    )


def judge(
    login: str, networks: list[str], cfg: LoginsSection, count: int | None = None
) -> list[Finding]:
    """`networks`: the newest (or all) of the window; `count`: how many in all."""
    total = len(networks) if count is None else count
    if total <= cfg.max_networks:
        return []
    evidence: dict[str, Any] = {
        "subject": f"user:{login}",
        "networks": total,
        "threshold": cfg.max_networks,
        "window": format_duration(cfg.window),
        "recent": networks[-SHOWN:],
        "explain": explain(login, total, cfg),
    }
    places = geo.describe(cfg.geoip_db, networks)
    countries = sorted({p["country"] for p in places if p.get("country")})
    asns = sorted({p["asn"] for p in places if p.get("asn")})
    if countries or asns:
        evidence["countries"], evidence["asns"] = countries, asns
    action = {"tempfail": Action.TEMPFAIL, "reject": Action.REJECT}.get(cfg.action)
    if cfg.action == "quarantine":
        action = Action.QUARANTINE
    text = "Your login was used from too many places; it is paused, contact your provider"
    reply: Reply | None = None
    if action == Action.TEMPFAIL:
        reply = TempFailReply(451, "4.7.1", text)
    elif action == Action.REJECT:
        reply = RejectReply(550, "5.7.1", text)
    return [
        Finding(
            check=NAME,
            name="login-spread",
            score=cfg.score,
            evidence=evidence,
            action=action,
            reply=reply,
            reason="login used from too many networks",
        )
    ]


def run_mail(ctx: Context) -> list[Finding]:
    seen = ctx.message.notes.get(NOTE)
    if not isinstance(seen, Spread) or not ctx.sender.sasl_user:
        return []
    nets = [net for net, _ in seen.newest]
    return judge(ctx.sender.sasl_user, nets, ctx.policy.logins, seen.count)


MAIL = Check("logins.mail", Stage.MAIL, run_mail)
MAIL_READS.append(mail_read)
