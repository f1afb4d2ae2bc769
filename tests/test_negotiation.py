"""What the milter asks Postfix to send and to wait for (negotiated per socket),
and the `[milter] workers` setting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx  # not a pytest class

from relaywarden.devstack.redis import RedisServer
from relaywarden.engine import body_needed
from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.runtime import Overrides, Runtime
from tests.mail import message
from tests.milter_ctx import NO_REPLY_BITS


def negotiated(cls: type[RelayWardenMilter]) -> int:
    """The protocol bits pymilter agrees to when Postfix offers every one."""
    return 0x1FFFFF & ~cls.protocol_mask()


def test_postfix_does_not_send_helo_which_no_check_reads() -> None:
    assert negotiated(RelayWardenMilter) & Milter.P_NOHELO


def test_postfix_does_not_send_end_of_headers() -> None:
    """The body's readers start at its first chunk: EOH is one packet and one
    callback (a GIL hand-over) per message that nothing needs."""
    assert negotiated(RelayWardenMilter) & Milter.P_NOEOH


@pytest.mark.parametrize("listen", ["inet:9900@127.0.0.1", "inet6:9900@::1"])
def test_over_tcp_data_is_answered(listen: str) -> None:
    cls = RelayWardenMilter.for_listen(listen)
    assert not negotiated(cls) & Milter.P_NR_DATA  # the answer carries the ACK (Nagle)
    assert not negotiated(cls) & Milter.P_NODATA


def test_over_a_unix_socket_data_is_not_sent() -> None:
    cls = RelayWardenMilter.for_listen("unix:/run/relaywarden/milter.sock")
    assert negotiated(cls) & Milter.P_NODATA
    assert issubclass(cls, RelayWardenMilter)
    # Everything else is negotiated as over TCP.
    assert negotiated(cls) & ~Milter.P_NODATA == negotiated(RelayWardenMilter)


def test_callbacks_that_decide_are_still_sent_and_answered() -> None:
    bits = negotiated(RelayWardenMilter)
    for skipped in (Milter.P_NOCONNECT, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NOHDRS,
                    Milter.P_NOBODY):  # fmt: skip
        assert not bits & skipped
    for answered in (Milter.P_NR_MAIL, Milter.P_NR_RCPT):
        assert not bits & answered


@pytest.mark.parametrize(("value", "count"), [(1, 1), (4, 4), ("auto", None)])
def test_workers_setting(value: int | str, count: int | None) -> None:
    milter = policy_from_dict({"milter": {"workers": value}}).milter
    assert milter.worker_count() == (count or len(__import__("os").sched_getaffinity(0)))


@pytest.mark.parametrize("value", [0, -1, 1000, "many"])
def test_workers_setting_refused(value: int | str) -> None:
    with pytest.raises(PolicyError) as exc:
        policy_from_dict({"milter": {"workers": value}})
    assert "milter.workers" in str(exc.value.errors)


# -- the body: sent only when some check reads it ------------------------------
NO_BODY_READER = """
[content]
enabled = false
[checks.sender]
enabled = false
[limits.burst]
enabled = false
"""


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point the adapter at a runtime with the given policy and a real redis-server."""
    monkeypatch.setattr(
        MilterCtx, "default_opts", [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    )
    server = RedisServer()
    url = server.start(tmp_path)

    def start(policy_text: str) -> None:
        policy = tmp_path / "policy.toml"
        policy.write_text(policy_text)
        RelayWardenMilter.runtime = Runtime.start(policy, Overrides(redis_url=url))
        Milter.factory = RelayWardenMilter

    try:
        yield start
    finally:
        server.stop()


def deliver(body: bytes) -> tuple[int, RelayWardenMilter]:
    ctx = MilterCtx()
    ctx._setsymval("i", "4ABCDEFGHJK")
    assert ctx._connect(host="vps.example", helo="vps.example", ip="203.0.113.7") == 0
    assert ctx._envfrom("<orders@shop.example>") == Milter.CONTINUE
    assert ctx._envrcpt("<buyer@example.org>") == Milter.CONTINUE
    ctx._data()
    for line in message().partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b": ")
        ctx._priv.header_bytes(name.decode(), value)
    ctx._eoh()
    ctx._feed_body(BytesIO(body))
    milter = ctx._priv
    return int(ctx._eom()), milter


def test_no_check_reads_the_body_so_postfix_sends_none(serve: Callable[[str], None]) -> None:
    serve(NO_BODY_READER)
    status, milter = deliver(b"x" * 5000)
    assert milter._protocol & Milter.P_NOBODY
    assert status == Milter.ACCEPT and milter.message.body_size == 0


@pytest.mark.parametrize(
    "policy",
    [
        NO_BODY_READER.replace("[content]\nenabled = false", "[content]\nenabled = true"),
        NO_BODY_READER + '[plans.default]\nmessages = ["100/1m"]\nbytes = ["10000000/1h"]\n',
    ],
    ids=["content view", "a bytes limit"],
)
def test_a_check_that_reads_the_body_gets_it(serve: Callable[[str], None], policy: str) -> None:
    serve(policy)
    status, milter = deliver(b"x" * 5000)
    assert not milter._protocol & Milter.P_NOBODY
    assert status == Milter.ACCEPT and milter.message.body_size == 5000


def test_under_the_default_policy_the_body_is_read() -> None:
    # The content view, and DMARC that verifies DKIM signatures over the body.
    assert body_needed(policy_from_dict({}))
    assert body_needed(policy_from_dict({"checks": {"sender": {"enabled": False}}}))
    assert body_needed(policy_from_dict({"content": {"enabled": False}}))


@pytest.mark.parametrize(
    "limits",
    [
        {"plans": {"p": {"bytes": ["1000000/1h"]}}},
        {"plans": {"p": {"messages": ["10/1m"], "customer": {"bytes": ["1000000/1h"]}}}},
        {"limits": {"global": {"bytes": ["1000000000/1h"]}}},
        {"limits": {"overrides": [{"subject": "vps:192.0.2.1", "limits": {"bytes": ["9/1h"]}}]}},
    ],
)
def test_a_bytes_limit_anywhere_needs_the_body(limits: dict) -> None:  # type: ignore[type-arg]
    off = {"content": {"enabled": False}, "checks": {"sender": {"enabled": False}}}
    assert not body_needed(policy_from_dict(off))
    assert body_needed(policy_from_dict({**off, **limits}))
