"""Campaigns across the whole provider: one fingerprint, many senders.

The content check leaves the message's `Fingerprint` in `Message.notes`; the
finish hook queues campaign.lua on the end-of-message pipeline (the round trip
that records the decision and commits the rate counters), which records this
copy and returns the campaign's totals including it. `settle` then turns those
totals into findings: when they cross the policy's thresholds, or the campaign
is blocked, the verdict of this very message moves (see README, "Campaigns").
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import redis

from relaywarden import metrics
from relaywarden.content.fingerprint import Fingerprint
from relaywarden.keys import digest
from relaywarden.limits import scripts
from relaywarden.policy import Policy
from relaywarden.store import FINISH_RESULTS, Outcome, RedisStore, redis_errors
from relaywarden.verdict import Action, Finding, RejectReply, TempFailReply

log = logging.getLogger("relaywarden.content")

NOTE = "campaign"  # Message.notes: the Fingerprint, set by the content check
SLOT = "campaign.slot"  # Message.notes: index of campaign.lua's reply in the pipeline
NAME = "campaigns"
ID = re.compile(r"^[0-9a-f]{16}$")
MAX_SAMPLE = 200

BLOCKED_REPLY = RejectReply(550, "5.7.1", "Message refused: part of a blocked bulk campaign")
CAMPAIGN_REPLY = {
    Action.TEMPFAIL: TempFailReply(
        451, "4.7.1", "Message deferred: the same message is being sent by many senders"
    ),
    Action.REJECT: RejectReply(
        550, "5.7.1", "Message refused: the same message is being sent by many senders"
    ),
}


def prefix(store: RedisStore) -> str:
    # One hash tag for all campaign keys: a campaign id is only known once a
    # band has been read, so the script derives its keys (see campaign.lua).
    return f"{store.keys.prefix}:cmp:{{cmp}}:"


def band_key(store: RedisStore, band: str) -> str:
    return f"{prefix(store)}b:{band}"


def campaign_key(store: RedisStore, campaign: str) -> str:
    return f"{prefix(store)}c:{campaign}"


def index_key(store: RedisStore) -> str:
    return f"{prefix(store)}active"


@dataclass(frozen=True)
class Totals:
    id: str
    vpses: int
    customers: int
    recipients: int
    messages: int
    first_seen: float
    blocked: bool

    @classmethod
    def parse(cls, reply: list[Any]) -> Totals:
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        return cls(
            id=text[0],
            vpses=int(text[1]),
            customers=int(text[2]),
            recipients=int(text[3]),
            messages=int(text[4]),
            first_seen=float(text[5]),
            blocked=text[6] == "1",
        )


def _sample(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:MAX_SAMPLE]


# -- the end-of-message pipeline ----------------------------------------------------
@dataclass(frozen=True)
class Tracked:
    """What the content check leaves for the finish hook."""

    fingerprint: Fingerprint
    window: float


def finish_hook(store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
    msg = outcome.message
    tracked = msg.notes.get(NOTE)
    if not isinstance(tracked, Tracked) or SLOT in msg.notes:
        return
    fp = tracked.fingerprint
    if outcome.event.get("stage") != "eom":
        return
    if outcome.verdict.action not in (Action.ACCEPT, Action.QUARANTINE):
        return  # a refused copy (and its retries) is not counted
    sender = outcome.sender
    spec = {
        "c": campaign_key(store, ""),
        "b": list(fp.bands),
        "w": int(tracked.window),
        "v": digest("vps:" + sender.vps),
        "u": digest("customer:" + (sender.customer or "vps:" + sender.vps)),
        "r": max(1, msg.rcpt_count),
        "s": _sample(msg.first_header("Subject") or ""),
        "f": _sample(msg.mail_from or ""),
        "d": " ".join(fp.domains)[:MAX_SAMPLE],
    }
    keys = [band_key(store, b) for b in fp.bands] + [index_key(store)]
    msg.notes[SLOT] = len(pipe)
    scripts.evalsha(pipe, "campaign", keys, [_clock(), json.dumps(spec)])


def _clock() -> str:
    from relaywarden.checks.limits import _TEST_CLOCK

    return _TEST_CLOCK


RedisStore.finish_hooks.append(finish_hook)


# -- what the totals mean ---------------------------------------------------------
def totals_of(store: RedisStore, notes: dict[str, Any]) -> Totals | None:
    """This message's campaign totals from the finish round trip, None if it failed."""
    slot, results = notes.get(SLOT), notes.get(FINISH_RESULTS)
    if not isinstance(slot, int) or not isinstance(results, list) or slot >= len(results):
        if isinstance(slot, int):
            metrics.DEPENDENCY_ERRORS.labels(service="redis", check=NAME).inc()
            log.warning("campaign totals unavailable: the end-of-message round trip failed")
        return None
    reply = results[slot]
    if isinstance(reply, Exception):
        if scripts.is_noscript(reply):  # Redis restarted: load for the next message
            try:
                scripts.load(store.client)
            except redis.RedisError as exc:
                log.warning("could not load the scripts: %s", exc)
        metrics.DEPENDENCY_ERRORS.labels(service="redis", check=NAME).inc()
        log.warning("campaign script failed: %s", reply)
        return None
    return Totals.parse(reply)


def findings_for(totals: Totals, policy: Policy) -> list[Finding]:
    cfg = policy.campaigns
    evidence: dict[str, Any] = {
        "campaign": totals.id,
        "vpses": totals.vpses,
        "customers": totals.customers,
        "recipients": totals.recipients,
        "messages": totals.messages,
    }
    if totals.blocked:
        return [
            Finding(
                check=NAME,
                name="campaign-blocked",
                evidence=evidence,
                action=Action.REJECT,
                reply=BLOCKED_REPLY,
                reason="blocked campaign",
            )
        ]
    many_senders = totals.vpses >= cfg.vpses or totals.customers >= cfg.customers
    # One customer's own mailing, however large, is its plan's business.
    widely_sent = totals.customers >= 2 and totals.recipients >= cfg.recipients
    if not (many_senders or widely_sent):
        return []
    action = Action.parse(cfg.action)
    return [
        Finding(
            check=NAME,
            name="campaign",
            evidence=evidence,
            action=action,
            reply=CAMPAIGN_REPLY.get(action),
            reason="same message from many senders",
        )
    ]


def late_findings(store: RedisStore, notes: dict[str, Any], policy: Policy) -> list[Finding]:
    """Findings from this message's campaign totals (read on the finish round trip)."""
    totals = totals_of(store, notes)
    return findings_for(totals, policy) if totals is not None else []


# -- the abuse desk's view ------------------------------------------------------------
@dataclass(frozen=True)
class Campaign:
    id: str
    subject: str
    sender: str
    domains: str
    vpses: int
    customers: int
    recipients: int
    messages: int
    first_seen: float
    last_seen: float
    blocked: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def active(store: RedisStore, limit: int = 200) -> list[Campaign]:
    """Campaigns seen within their window, most recently seen first."""
    index = index_key(store)
    with redis_errors("campaign listing"):
        rows: list[tuple[bytes, float]] = store.client.zrevrange(  # type: ignore[assignment]
            index, 0, limit - 1, withscores=True
        )
        ids = [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in rows]
        pipe = store.client.pipeline(transaction=False)
        for cid, _ in ids:
            key = campaign_key(store, cid)
            pipe.hgetall(key)
            # execute_command: a Cluster pipeline refuses pipe.pfcount (it could
            # span slots); one key is one slot.
            pipe.execute_command("PFCOUNT", key + ":v")  # type: ignore[no-untyped-call]
            pipe.execute_command("PFCOUNT", key + ":u")  # type: ignore[no-untyped-call]
        replies: list[Any] = pipe.execute()
        out, gone = [], []
        for n, (cid, last) in enumerate(ids):
            row, vpses, customers = replies[3 * n : 3 * n + 3]
            if not row:
                gone.append(cid)
                continue
            out.append(_campaign(cid, last, row, int(vpses), int(customers)))
        if gone:
            store.client.zrem(index, *gone)
    return out


def get(store: RedisStore, campaign: str) -> Campaign | None:
    return next((c for c in active(store, 10_000) if c.id == campaign), None)


def _campaign(cid: str, last: float, row: dict[bytes, bytes], vpses: int, cust: int) -> Campaign:
    f = {k.decode(): v.decode("utf-8", "replace") for k, v in row.items()}
    return Campaign(
        id=cid,
        subject=f.get("subject", ""),
        sender=f.get("sender", ""),
        domains=f.get("domains", ""),
        vpses=vpses,
        customers=cust,
        recipients=int(f.get("rcpts", "0")),
        messages=int(f.get("msgs", "0")),
        first_seen=float(f.get("first", "0")),
        last_seen=last,
        blocked=f.get("blocked") == "1",
    )


class CampaignError(ValueError):
    pass


def set_blocked(store: RedisStore, campaign: str, blocked: bool, window: float) -> None:
    """Block (persist the campaign and refuse every copy) or release it (expire again)."""
    if not ID.match(campaign):
        raise CampaignError(f"{campaign!r} is not a campaign id (16 hex digits)")
    key = campaign_key(store, campaign)
    with redis_errors("campaign block"):
        if not store.client.exists(key):
            raise CampaignError(f"campaign {campaign} is not active")
        members: set[bytes] = store.client.smembers(key + ":b")  # type: ignore[assignment]
        bands = [band_key(store, m.decode()) for m in members]
        pipe = store.client.pipeline(transaction=True)
        pipe.hset(key, "blocked", "1" if blocked else "0")
        for k in [key, key + ":v", key + ":u", key + ":b", *bands]:
            if blocked:
                pipe.persist(k)
            else:
                pipe.expire(k, int(window))
        pipe.zadd(index_key(store), {campaign: time.time()})
        pipe.execute()


def block(
    store: RedisStore, campaign: str, *, actor: str, reason: str, window: float, via: str = "cli"
) -> Campaign:
    """Refuse every copy of `campaign` from every customer until released; audited."""
    return _act(store, campaign, True, actor=actor, reason=reason, window=window, via=via)


def release(
    store: RedisStore, campaign: str, *, actor: str, reason: str, window: float, via: str = "cli"
) -> Campaign:
    """Lift a campaign block: copies count again and expire with the window; audited."""
    return _act(store, campaign, False, actor=actor, reason=reason, window=window, via=via)


def _act(
    store: RedisStore,
    campaign: str,
    blocked: bool,
    *,
    actor: str,
    reason: str,
    window: float,
    via: str,
) -> Campaign:
    from relaywarden import audit

    set_blocked(store, campaign, blocked, window)
    found = get(store, campaign)
    if found is None:  # expired between the write and the read
        raise CampaignError(f"campaign {campaign} is not active")
    audit.record(
        store,
        audit.AuditEntry(
            actor=actor,
            action="block" if blocked else "unblock",
            target=f"campaign:{campaign}",
            reason=reason[:200],
            details={"subject": found.subject, "vpses": found.vpses, "messages": found.messages},
            via=via,
        ),
    )
    return found
