"""The reservation's life in the real adapter (pymilter's TestCtx, real redis-server):
taken at MAIL FROM, trued up at end of message, given back on abort, close, a
refusal at MAIL FROM or every recipient refused; never a third round trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
import redis

from relaywarden.limits.status import subject_status
from relaywarden.runtime import Runtime
from relaywarden.store import is_cluster
from relaywarden.subjects import parse_subject
from tests.limits_support import count_round_trips
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

POLICY = """
[plans.default]
messages = ["100/1m"]
recipients = ["30/1m"]

[limits.reservation]
recipients = 3

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.inventory]
refresh = "1h"

[[blocks]]
subject = "sender:spam@shop.example"
action = "reject"
reason = "test block"
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY) as rt:
        warm = open_ctx("203.0.113.99")  # loads the Lua scripts: a once-per-Redis cost
        warm._envfrom("<warm@cafe.example>")
        warm._abort()
        warm._close()
        yield rt


def reservations(store_client: redis.Redis) -> int:
    """Live reservations, read on a client of its own (not counted as the milter's)."""
    if is_cluster(store_client):
        nodes = [n.redis_connection for n in store_client.get_primaries()]
        clients = [
            redis.Redis(connection_pool=redis.ConnectionPool(**n.connection_pool.connection_kwargs))
            for n in nodes
        ]
    else:
        kwargs = store_client.connection_pool.connection_kwargs
        clients = [redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))]
    return sum(int(c.zcard(k)) for c in clients for k in c.scan_iter(match="rw:l:*:q"))


def test_abort_gives_the_reservation_back_in_the_second_round_trip(runtime: Runtime) -> None:
    client = runtime.store.client
    sent = count_round_trips(client)
    ctx = open_ctx("203.0.113.7")
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    assert ctx._envrcpt("<a@example.org>") == Milter.CONTINUE
    held = reservations(client)
    ctx._abort()
    ctx._close()
    assert (held, reservations(client)) == (1, 0)
    assert sent() == 2  # MAIL FROM, then the give-back


def test_a_dropped_connection_gives_the_reservation_back(runtime: Runtime) -> None:
    ctx = open_ctx("203.0.113.7")
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    ctx._close()  # no abort: the client vanished
    assert reservations(runtime.store.client) == 0


def test_refused_at_mail_from_by_a_block_holds_nothing(runtime: Runtime) -> None:
    client = runtime.store.client
    sent = count_round_trips(client)
    ctx = open_ctx("203.0.113.7")
    assert ctx._envfrom("<spam@shop.example>") == Milter.REJECT
    ctx._close()
    assert sent() == 2  # the admission, then the decision record with the give-back
    assert reservations(client) == 0


def test_end_of_message_trues_up_and_counts_only_what_was_used(runtime: Runtime) -> None:
    client = runtime.store.client
    sent = count_round_trips(client)
    ctx = open_ctx("203.0.113.7")
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    assert ctx._envrcpt("<a@example.org>") == Milter.CONTINUE
    assert deliver(ctx, message()) == Milter.ACCEPT
    ctx._close()
    assert sent() == 2
    assert reservations(client) == 0
    # Counted: one message and the one recipient it used, not the three it reserved.
    report = subject_status(runtime.store, runtime.policy, parse_subject("vps:203.0.113.7"))
    counts = {(w["unit"], w["window"]): w["count"] for w in report["windows"]}
    assert counts[("messages", 60.0)] == 1 and counts[("recipients", 60.0)] == 1


def test_more_recipients_than_one_message_may_reserve_get_452_and_no_hit(
    runtime: Runtime,
) -> None:
    ctx = open_ctx("203.0.113.7")
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    replies = [ctx._envrcpt(f"<r{n}@example.org>") for n in range(4)]
    assert replies == [Milter.CONTINUE] * 3 + [Milter.TEMPFAIL]
    assert ctx._reply[:2] == ("452", "4.5.3")
    assert deliver(ctx, message()) == Milter.ACCEPT
    ctx._close()
    events = runtime.store.recent_events(2)
    assert events[1]["stage"] == "rcpt" and events[1]["findings"][0]["name"] == (
        "recipients-per-message"
    )
