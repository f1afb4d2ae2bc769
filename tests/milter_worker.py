"""A milter process for the interleaving tests: the real adapter (RelayWardenMilter,
driven by pymilter's TestCtx) with its own Runtime and Redis connection pool, fed
one callback at a time over a pipe, so a test can interleave transactions of
several processes exactly as it chooses.

The clock is the engine's test seam (`checks.limits._TEST_CLOCK`), set before each
callback: the scripts then take that time instead of Redis TIME.
"""

from __future__ import annotations

from io import BytesIO
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import Milter
from Milter.testctx import TestCtx as MilterCtx

from relaywarden.checks import limits as limits_check
from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.runtime import Overrides, Runtime

# TestCtx plays an MTA that does not negotiate no-reply (see tests/test_adapter.py).
NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


def open_ctx(ip: str) -> MilterCtx:
    ctx = MilterCtx()
    ctx._setsymval("i", "4ABCDEFGHJK")
    assert ctx._connect(host="vps.example", helo="vps.example", ip=ip) == Milter.CONTINUE
    return ctx


def deliver(ctx: MilterCtx, data: bytes) -> tuple[int, int]:
    """DATA, headers, body, end of message: (status, body bytes the milter saw)."""
    assert ctx._data() == Milter.CONTINUE
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        ctx._priv.header_bytes(name.decode(), value)
    ctx._eoh()
    ctx._feed_body(BytesIO(body))
    return int(ctx._eom()), len(body)


def serve(conn: Connection, policy: str, redis_url: str) -> None:
    MilterCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    runtime = Runtime.start(Path(policy), Overrides(redis_url=redis_url))
    RelayWardenMilter.runtime = runtime
    Milter.factory = RelayWardenMilter
    ctxs: dict[int, MilterCtx] = {}
    conn.send("ready")
    while True:
        op, clock, tid, arg = conn.recv()
        if op == "stop":
            return
        limits_check._TEST_CLOCK = clock
        result: Any = None
        if op == "mail":
            ctxs[tid] = open_ctx(arg["ip"])
            result = int(ctxs[tid]._envfrom(f"<{arg['from']}>", f"SIZE={arg['size']}"))
        elif op == "rcpt":
            result = int(ctxs[tid]._envrcpt(f"<{arg}>"))
        elif op == "eom":
            result = deliver(ctxs[tid], arg)
            ctxs.pop(tid)._close()
        elif op == "abort":  # the client gave up (RSET / QUIT / lost connection)
            ctx = ctxs.pop(tid)
            ctx._abort()
            ctx._close()
        elif op == "crash":  # the milter died mid-transaction: no callback ever comes
            ctxs.pop(tid)
        elif op == "reservations":  # live reservations held in Redis, all scopes
            client = runtime.store.client
            result = sum(int(client.zcard(k)) for k in client.scan_iter(match="rw:l:*:q"))
        conn.send(result)
