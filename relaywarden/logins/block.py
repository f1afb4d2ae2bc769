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
from relaywarden.outcomes.notify import NOTIFIER, deliver
from relaywarden.policy import Policy
from relaywarden.policy.durations import format_duration
from relaywarden.store import Outcome, RedisStore
from relaywarden.subjects import Subject

ACTOR = "relaywarden"


def block_login(store: RedisStore, policy: Policy, login: str, evidence: dict[str, object]) -> None:
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
    deliver(cfg.webhook, cfg.email, f"RelayWarden blocked login {subject}", notice)


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
                    functools.partial(block_login, store, policy, login, dict(finding.evidence))
                )
                return


def install(policy: Callable[[], Policy]) -> None:
    if not any(isinstance(h, LoginBlocker) for h in RedisStore.finish_hooks):
        RedisStore.finish_hooks.append(LoginBlocker(policy))
