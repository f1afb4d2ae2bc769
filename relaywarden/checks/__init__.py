"""Checks: small functions from a message's facts to findings.

A check never decides an action on its own account except through a finding's
`action` (a static block, an invalid sender); the engine adds the rest up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relaywarden.identity import Sender
from relaywarden.message import Message
from relaywarden.policy import Policy
from relaywarden.store import Store
from relaywarden.verdict import Finding

# Message.notes key under which the rate-limit check leaves the block records it
# fetched at MAIL FROM, so the blocks check needs no round trip of its own.
BLOCKS_NOTE = "blocks"


class Stage(enum.IntEnum):
    """When in the SMTP dialogue a check can run: as early as its facts exist."""

    MAIL = 1  # MAIL FROM: client, SASL login, envelope sender
    RCPT = 2  # each RCPT TO: the recipient in `Context.rcpt`
    EOM = 3  # end of message: headers, body size and digest


@dataclass
class Context:
    message: Message
    sender: Sender
    policy: Policy
    store: Store
    resolver: Any  # relaywarden.dns.Resolver; Any keeps checks that use no DNS free of it
    now: float
    rcpt: str = ""


CheckFn = Callable[[Context], list[Finding]]
BodyNeed = Callable[[Policy], bool]


def no_body(policy: Policy) -> bool:
    return False


@dataclass(frozen=True)
class Check:
    name: str
    stage: Stage
    run: CheckFn
    # Whether, under `policy`, this check reads the body (its bytes, size or the
    # content view). When no check does, Postfix is told not to send the body.
    needs_body: BodyNeed = no_body
