"""The pymilter adapter without an MTA: pymilter's own TestCtx drives the callbacks
in libmilter's order, against a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from relaywarden.runtime import Runtime
from tests.limits_support import count_round_trips
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

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


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY) as rt:
        yield rt


def test_refused_recipients_cost_no_extra_round_trip(runtime: Runtime) -> None:
    warm = open_ctx("203.0.113.99")  # loads the Lua scripts: a once-per-Redis cost
    warm._envfrom("<warm@cafe.example>")
    warm._envrcpt("<r@example.org>")
    deliver(warm, message())
    warm._close()
    sent = count_round_trips(runtime.store.client)
    ctx = open_ctx()
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
    ctx = open_ctx("203.0.113.8")
    ctx._envfrom("<orders@shop.example>")
    assert [ctx._envrcpt(f"<r{n}@example.org>") for n in range(4)][2:] == [Milter.TEMPFAIL] * 2
    ctx._abort()  # the client gives up: no end of message
    ctx._close()
    events = runtime.store.recent_events(10)
    assert [e["action"] for e in events] == ["tempfail", "tempfail"]


@pytest.mark.parametrize("body", [b"", b"Hello.\r\n"])
def test_body_readers_start_without_an_end_of_headers_callback(
    runtime: Runtime, body: bytes
) -> None:
    """Postfix is told not to send EOH: the content view and a DKIM-signed
    message's body spool start at the first body chunk, or at the end of a
    message that has none, and the message is still read whole."""
    ctx = open_ctx()
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    assert ctx._envrcpt("<a@example.org>") == Milter.CONTINUE
    head = b"From: <orders@shop.example>\r\nDKIM-Signature: v=1; d=shop.example; s=x; b=AAAA\r\n"
    status = deliver(ctx, head + b"Subject: hi\r\n\r\n" + body)
    assert status == Milter.ACCEPT
    milter = ctx._priv
    assert milter.message.content is not None  # the view was built and finished
    assert milter.message.body_size == len(body)
    assert "dkim-body" in milter.message.notes  # the spool a DKIM verification reads
