"""Queue id -> sender identity, written at end of message so that Postfix's log
lines (which name only the queue id) can be attributed later.

The write rides on the end-of-message pipeline (`RedisStore.finish_hooks`): no
round trip of its own. Kept for `[outcomes] identity_ttl`, longer than Postfix
keeps a message (maximal_queue_lifetime), so a bounce on the last retry is
still attributed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from relaywarden.keys import digest
from relaywarden.policy import Policy
from relaywarden.store import Outcome, RedisStore, is_cluster, redis_errors
from relaywarden.subjects import Subject
from relaywarden.verdict import Action


@dataclass(frozen=True)
class Identity:
    """Whose message a queue id was, as the milter saw it."""

    vps: str
    customer: str
    login: str
    sender: str
    ref: str

    def subjects(self) -> list[Subject]:
        """Subjects an outcome of this message is counted for."""
        out = [Subject("vps", self.vps)]
        if self.customer:
            out.append(Subject("customer", self.customer))
        if self.login:
            out.append(Subject("user", self.login))
        return out

    def dumps(self) -> str:
        return json.dumps(
            {"v": self.vps, "c": self.customer, "u": self.login, "s": self.sender, "r": self.ref}
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Identity | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["v"]), str(data["c"]), str(data["u"]), str(data["s"]), str(data["r"])
            )
        except (ValueError, KeyError, TypeError):
            return None


def identity_key(prefix: str, relay: str, queue_id: str) -> str:
    # Queue ids are only unique per relay; hashed, as every key part from outside.
    return f"{prefix}:qid:{digest(relay + chr(0) + queue_id)}"


class IdentityRecorder:
    """The finish hook; reads the policy through a callable so reloads apply."""

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self.policy = policy

    def __call__(self, store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
        policy = self.policy()
        msg, verdict = outcome.message, outcome.verdict
        if not policy.outcomes.enabled or not msg.queue_id:
            return
        if outcome.event.get("stage") != "eom":
            return
        if verdict.action not in (Action.ACCEPT, Action.QUARANTINE):
            return  # refused or discarded: Postfix will log no delivery for it
        sender = outcome.sender
        identity = Identity(
            vps=sender.vps,
            customer=sender.customer or "",
            login=sender.sasl_user,
            sender=msg.mail_from or "",
            ref=verdict.ref,
        )
        key = identity_key(store.keys.prefix, policy.quarantine.relay, msg.queue_id)
        pipe.set(key, identity.dumps(), ex=int(policy.outcomes.identity_ttl))


def install(policy: Callable[[], Policy]) -> None:
    """Register the recorder once per process."""
    if not any(isinstance(h, IdentityRecorder) for h in RedisStore.finish_hooks):
        RedisStore.finish_hooks.append(IdentityRecorder(policy))


def lookup(store: RedisStore, relay: str, queue_ids: Sequence[str]) -> dict[str, Identity | None]:
    """Identities of several queue ids in one round trip (None: not ours, or expired)."""
    if not queue_ids:
        return {}
    keys = [identity_key(store.keys.prefix, relay, q) for q in queue_ids]
    with redis_errors("queue id lookup"):
        if is_cluster(store.client):  # one key per queue id: many slots, MGET per slot
            rows: list[Any] = cast(Any, store.client).mget_nonatomic(keys)
        else:
            rows = store.client.mget(keys)
    return {
        q: (Identity.loads(r) if r is not None else None)
        for q, r in zip(queue_ids, rows, strict=True)
    }
