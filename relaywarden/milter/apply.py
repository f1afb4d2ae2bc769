"""The one place where a Verdict becomes something Postfix understands."""

from __future__ import annotations

import Milter

from relaywarden.checks import Stage
from relaywarden.verdict import Action, Reply, TempFailReply, Verdict

INTERNAL_ERROR = TempFailReply(451, "4.3.0", "Temporary relay problem, please retry later")


def set_reply(ctx: Milter.Base, reply: Reply) -> None:
    ctx.setreply(str(reply.code), reply.enhanced, reply.text)


def apply_verdict(ctx: Milter.Base, verdict: Verdict, stage: Stage) -> int:
    """Tell Postfix what to do; returns the pymilter status for the callback.

    A quarantine can only be carried out at end of message; at earlier stages
    the adapter remembers it and lets the transaction go on.
    """
    match verdict.action:
        case Action.ACCEPT | Action.QUARANTINE if stage != Stage.EOM:
            return int(Milter.CONTINUE)
        case Action.ACCEPT:
            return int(Milter.ACCEPT)
        case Action.QUARANTINE:
            # Postfix shows this reason in `postqueue -j`/logs; the ref ties it to our index.
            ctx.quarantine(f"RelayWarden {verdict.ref}: {verdict.reason}")
            return int(Milter.ACCEPT)
        case Action.DISCARD:
            return int(Milter.DISCARD)
        case Action.TEMPFAIL | Action.REJECT:
            if verdict.reply is not None:
                set_reply(ctx, verdict.reply)
            return int(Milter.TEMPFAIL if verdict.action == Action.TEMPFAIL else Milter.REJECT)
    raise AssertionError(f"unhandled action {verdict.action}")


def internal_error(ctx: Milter.Base, ref: str) -> int:
    reply = INTERNAL_ERROR
    set_reply(ctx, type(reply)(reply.code, reply.enhanced, f"{reply.text} (ref {ref})"))
    return int(Milter.TEMPFAIL)
