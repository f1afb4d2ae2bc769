"""A login over the network threshold is blocked (`user:LOGIN`) and the abuse
team told, from the notices thread: the milter thread only enqueues.

Registered as an end-of-message hook, which also runs for a transaction refused
at MAIL FROM, so the block follows the very message that crossed the line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import redis

from relaywarden import blocking
from relaywarden.limits.escalation import notice_sender
from relaywarden.outcomes.notify import NOTIFIER, deliver, tell_customer
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.store import Outcome, RedisStore
from relaywarden.subjects import Subject

ACTOR = "relaywarden"


def block_login(
    store: RedisStore,
    policy: Policy,
    login: str,
    evidence: dict[str, object],
    contact: tuple[str, ...] = (),
) -> None:
    cfg = policy.logins
    subject = Subject("user", login)
    if store.blocks_for([subject]):
        return  # already blocked: one block, one notice
    reason = f"automatic: {evidence.get('explain', 'login used from too many networks')}"
    record = blocking.block(
        store,
        subject,
        actor=ACTOR,
        reason=reason[:200],
        duration=cfg.block_for,
        action=cfg.block_action,
        via="milter",
    )
    notice = {
        "event": "relaywarden.login-blocked",
        "subject": str(subject),
        "action": record.action,
        "until": record.until,
        "duration": format_duration(cfg.block_for),
        "evidence": evidence,
        "explain": evidence.get("explain", ""),
        "unblock": f"relaywarden unblock {subject} --reason TEXT",
    }
    sender = notice_sender(policy, cfg.email.sender)
    deliver(cfg.webhook, cfg.email, f"RelayWarden blocked login {subject}", notice, sender)
    if contact and cfg.notify_customer:
        text = customer_text(login, evidence, format_duration(cfg.block_for))
        title = f"Your mail login {login} was blocked"
        tell_customer(cfg.email, list(contact), title, text, sender)


def customer_text(login: str, evidence: dict[str, object], duration: str) -> str:
    networks = evidence.get("networks")
    count = len(networks) if isinstance(networks, list | tuple | set) else networks
    return (
        f"Your mail login {login} was used to send mail through our relay from "
        f"{count or 'too many'} different networks in a short time, more than one "
        f"person or office could be in. We have blocked it for {duration}: mail sent "
        "with it is deferred meanwhile, not lost.\n\n"
        "If this was not you, your password has most likely been stolen: change it "
        "now, then reply to this message and our abuse team will lift the block.\n"
    )


class LoginBlocker:
    def __init__(self, policy: Callable[[], Policy]) -> None:
        self.policy = policy

    def __call__(self, store: RedisStore, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
        policy = self.policy()
        login = outcome.sender.sasl_user
        if not login or policy.logins.block_for <= 0:
            return
        for finding in outcome.verdict.findings:
            if finding.check == "logins" and finding.name == "login-spread":
                NOTIFIER.submit(
                    functools.partial(
                        block_login,
                        store,
                        policy,
                        login,
                        dict(finding.evidence),
                        outcome.sender.contact,
                    )
                )
                return


def install(policy: Callable[[], Policy]) -> None:
    if not any(isinstance(h, LoginBlocker) for h in RedisStore.finish_hooks):
        RedisStore.finish_hooks.append(LoginBlocker(policy))
