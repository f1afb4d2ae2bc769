"""The pymilter adapter without an MTA: pymilter's own TestCtx drives the callbacks
in libmilter's order, against a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx  # not a pytest class

from relaywarden.devstack.redis import RedisServer
from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.runtime import Overrides, Runtime
from tests.limits_support import count_round_trips
from tests.mail import message

# Two recipients a minute per VPS; no check that would ask DNS.
POLICY = """
[plans.default]
messages = ["100/1m"]
recipients = ["2/1m"]

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.inventory]
refresh = "1h"  # no background read while round trips are counted
"""


# TestCtx treats a NOREPLY answer as a failed connect, so it plays an MTA that
# does not negotiate no-reply: every callback then answers CONTINUE.
NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setattr(
        MilterCtx, "default_opts", [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    )
    server = RedisServer()
    url = server.start(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    rt = Runtime.start(policy, Overrides(redis_url=url))
    RelayWardenMilter.runtime = rt
    Milter.factory = RelayWardenMilter
    try:
        yield rt
    finally:
        server.stop()


def start(ip: str = "203.0.113.7") -> MilterCtx:
    ctx = MilterCtx()
    ctx._setsymval("i", "4ABCDEFGHJK")
    assert ctx._connect(host="vps.example", helo="vps.example", ip=ip) == Milter.CONTINUE
    return ctx


def deliver(ctx: MilterCtx, data: bytes) -> int:
    assert ctx._data() == Milter.CONTINUE
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        ctx._priv.header_bytes(name.decode(), value)
    ctx._eoh()
    ctx._feed_body(BytesIO(body))
    return int(ctx._eom())


def test_refused_recipients_cost_no_extra_round_trip(runtime: Runtime) -> None:
    warm = start("203.0.113.99")  # loads the Lua scripts: a once-per-Redis cost
    warm._envfrom("<warm@cafe.example>")
    warm._envrcpt("<r@example.org>")
    deliver(warm, message())
    warm._close()
    sent = count_round_trips(runtime.store.client)
    ctx = start()
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    replies = [ctx._envrcpt(f"<r{n}@example.org>") for n in range(5)]
    assert replies == [Milter.CONTINUE] * 2 + [Milter.TEMPFAIL] * 3
    assert ctx._reply[:2] == ("451", "4.7.1")
    assert deliver(ctx, message()) == Milter.ACCEPT
    ctx._close()
    # One round trip at MAIL FROM, one at end of message: the three refusals
    # travel with the final decision.
    assert sent() == 2
    events = runtime.store.recent_events(4)
    assert [e["stage"] for e in events] == ["eom", "rcpt", "rcpt", "rcpt"]
    assert [e["action"] for e in events[1:]] == ["tempfail"] * 3


def test_transaction_with_every_recipient_refused_is_still_recorded(runtime: Runtime) -> None:
    ctx = start("203.0.113.8")
    ctx._envfrom("<orders@shop.example>")
    assert [ctx._envrcpt(f"<r{n}@example.org>") for n in range(4)][2:] == [Milter.TEMPFAIL] * 2
    ctx._abort()  # the client gives up: no end of message
    ctx._close()
    events = runtime.store.recent_events(10)
    assert [e["action"] for e in events] == ["tempfail", "tempfail"]
