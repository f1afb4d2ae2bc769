"""Blocks: subjects the provider (static, in the policy) or the abuse team and the
escalation logic (dynamic, in Redis) have barred from sending."""

from __future__ import annotations

from relaywarden.checks import BLOCKS_NOTE, Check, Context, Stage
from relaywarden.policy.schema import BlockEntry
from relaywarden.returnpath import sender_key
from relaywarden.store import BlockRecord
from relaywarden.verdict import Action, Finding, RejectReply, Reply, TempFailReply
from relaywarden.wideblocks import WIDE

NAME = "blocks"


def _matches(entry: BlockEntry, ctx: Context) -> bool:
    subject, msg = entry.subject, ctx.message
    match subject.kind:
        case "network":
            addr = msg.client_address
            return (
                addr is not None
                and addr.version == subject.network.version
                and (addr in subject.network)
            )
        case "vps":
            return subject.value == ctx.sender.vps
        case "customer":
            return subject.value == ctx.sender.customer
        case "user":  # both folded (subjects.fold_login)
            return bool(ctx.sender.sasl_user) and subject.value == ctx.sender.sasl_user
        case "sender":  # both reduced to the sender a return path stands for
            scoped = subject.within is None or subject.within == ctx.sender.owner
            return (
                scoped and bool(msg.mail_from) and subject.value == sender_key(msg.mail_from or "")
            )
        case "domain":
            domain = msg.sender_domain
            return bool(domain) and (
                domain == subject.value or domain.endswith("." + subject.value)
            )
    return False


def block_reply(action: Action, reason: str) -> Reply | None:
    if action == Action.REJECT:
        return RejectReply(550, "5.7.1", f"Sender blocked by relay policy: {reason}")
    if action == Action.TEMPFAIL:
        return TempFailReply(451, "4.7.1", f"Sender temporarily blocked by relay policy: {reason}")
    return None


def _finding(subject: str, action: Action, reason: str, source: str) -> Finding:
    return Finding(
        check=NAME,
        name="blocked",
        evidence={"subject": subject, "source": source, "reason": reason},
        action=action,
        reply=block_reply(action, reason),
        reason="blocked sender",
    )


def _dynamic(record: BlockRecord) -> Finding:
    return _finding(record.subject, Action.parse(record.action), record.reason, record.set_by)


def run(ctx: Context) -> list[Finding]:
    findings = [
        _finding(str(e.subject), Action.parse(e.action), e.reason, "policy")
        for e in ctx.policy.blocks
        if _matches(e, ctx)
    ]
    # The rate-limit check fetches the blocks in its round trip at MAIL FROM.
    prefetched = ctx.message.notes.get(BLOCKS_NOTE)
    if prefetched is None:
        prefetched = ctx.store.blocks_for(ctx.sender.subjects(ctx.message))
    findings += [_dynamic(r) for r in prefetched]
    # network: and domain: blocks made at runtime: the in-process set.
    findings += [_dynamic(r) for r in WIDE.matching(ctx.message, ctx.now)]
    return findings


CHECK = Check(NAME, Stage.MAIL, run)
