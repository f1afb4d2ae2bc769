"""Driving the real adapter (RelayWardenMilter) without an MTA: pymilter's own
TestCtx calls the callbacks in libmilter's order. Shared by the adapter-level tests
and by the interleaving worker process (tests/milter_worker.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx  # not a pytest class

from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.runtime import Overrides, Runtime
from tests.redis_backend import start_redis

# TestCtx treats a NOREPLY answer as a failed connect, so it plays an MTA that
# does not negotiate no-reply: every callback then answers CONTINUE.
NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


def ctx_opts() -> list[int]:
    """TestCtx's negotiation options without the no-reply bits (a fresh list)."""
    return [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]


def hold(self: MilterCtx, reason: str) -> int:
    """TestCtx has no hold queue: remember the quarantine reason as Postfix would."""
    self._quarantine = reason
    return int(Milter.CONTINUE)


def install(runtime: Runtime) -> None:
    """Make `runtime` the one every new adapter instance uses."""
    RelayWardenMilter.runtime = runtime
    Milter.factory = RelayWardenMilter


@contextmanager
def adapter_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy_text: str, *, quarantine: bool = False
) -> Iterator[Runtime]:
    """A real redis-server and a Runtime on `policy_text`, installed in the adapter;
    `quarantine` gives TestCtx the hold queue stand-in (`hold`)."""
    monkeypatch.setattr(MilterCtx, "default_opts", ctx_opts())
    if quarantine:
        monkeypatch.setattr(MilterCtx, "quarantine", hold, raising=False)
    url, server = start_redis(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    rt = Runtime.start(policy, Overrides(redis_url=url))
    install(rt)
    try:
        yield rt
    finally:
        server.stop()


def open_ctx(ip: str = "203.0.113.7") -> MilterCtx:
    """A connected transaction from `ip`, with a queue id as Postfix gives one."""
    ctx = MilterCtx()
    ctx._setsymval("i", "4ABCDEFGHJK")
    assert ctx._connect(host="vps.example", helo="vps.example", ip=ip) == Milter.CONTINUE
    return ctx


def deliver(ctx: MilterCtx, data: bytes) -> int:
    """DATA, headers, body, end of message: the status at end of message."""
    assert ctx._data() == Milter.CONTINUE
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        ctx._priv.header_bytes(name.decode(), value)
    ctx._eoh()
    ctx._feed_body(BytesIO(body))
    return int(ctx._eom())
