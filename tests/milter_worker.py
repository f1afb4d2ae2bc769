"""A milter process for the interleaving tests: the real adapter (RelayWardenMilter,
driven by pymilter's TestCtx) with its own Runtime and Redis connection pool, fed
one callback at a time over a pipe, so a test can interleave transactions of
several processes exactly as it chooses.

The clock is the engine's test seam (`checks.limits._TEST_CLOCK`), set before each
callback: the scripts then take that time instead of Redis TIME.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from Milter.testctx import TestCtx as MilterCtx

from relaywarden.checks import limits as limits_check
from relaywarden.runtime import Overrides, Runtime
from tests.milter_ctx import ctx_opts, deliver, install, open_ctx


def serve(conn: Connection, policy: str, redis_url: str) -> None:
    MilterCtx.default_opts = ctx_opts()
    runtime = Runtime.start(Path(policy), Overrides(redis_url=redis_url))
    install(runtime)
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
            # (status, body bytes the milter saw)
            result = (deliver(ctxs[tid], arg), len(arg.partition(b"\r\n\r\n")[2]))
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
