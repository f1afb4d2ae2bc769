"""The milter with one callback changed, for bench/dataflow.py and bench/paired.py.

Variants: "answered" (as shipped: DATA gets a reply), "noreply" (DATA marked
@noreply), "absent" (no DATA callback at all, as most milters are written),
"all-answered" (every callback sent and answered), "unix-data-noreply" (over a
unix socket, DATA sent and not answered, as shipped until DATA was negotiated
away there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import Milter

from relaywarden.decisionlog import setup_logging
from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.milter.server import run
from relaywarden.runtime import Overrides, Runtime


class NoReplyData(RelayWardenMilter):
    @Milter.noreply
    def data(self) -> int:
        return int(Milter.CONTINUE)


class AbsentData(RelayWardenMilter):
    data = Milter.Base.data  # pymilter's @nocallback default: Postfix is told to skip DATA


NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


class AllAnswered(RelayWardenMilter):
    """Every callback answered, none skipped: what pymilter's broken negotiation gave."""

    _protocol_mask = RelayWardenMilter.protocol_mask() | NO_REPLY_BITS


class UnixDataNoReply(RelayWardenMilter):
    """Over a unix socket as before DATA was negotiated away there: sent, unanswered."""

    @Milter.noreply
    def data(self) -> int:
        return int(Milter.CONTINUE)

    _protocol_mask = RelayWardenMilter.protocol_mask() & ~Milter.P_NR_DATA

    @classmethod
    def for_listen(cls, listen: str) -> type[RelayWardenMilter]:
        return cls


VARIANTS: dict[str, type[RelayWardenMilter]] = {
    "all-answered": AllAnswered,
    "answered": RelayWardenMilter,
    "noreply": NoReplyData,
    "absent": AbsentData,
    "unix-data-noreply": UnixDataNoReply,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--nameserver", required=True, help="the bench's own DNS server")
    args = parser.parse_args()
    overrides = Overrides(
        listen=args.listen, redis_url=args.redis_url, nameservers=[args.nameserver]
    )
    runtime = Runtime.start(args.config, overrides)
    setup_logging(runtime.policy.log.level)  # as `relaywarden run`: a fair comparison
    return run(runtime, VARIANTS[args.variant])


if __name__ == "__main__":
    sys.exit(main())
