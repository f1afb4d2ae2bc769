"""Running the hot path's two pipelines (MAIL FROM and end of message) lean.

redis-py's `Pipeline.execute` does, per command and per call, work a milter pays
for on every message and never uses: HIMPORT bookkeeping, observability records,
event dispatch, watch state. Profiled under `bench.adapter` it was the largest
single share of the adapter's CPU. `execute` keeps what matters (one packed
write, every reply read so the pooled socket never desyncs, redis-py's own reply
callbacks, its retry policy with a reconnect, the connection back to the pool)
and leaves the rest out. Anything but a plain non-transactional pipeline, or a
pipeline using a redis-py feature this does not know, goes to redis-py as is.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import EMPTY_RESPONSE, NEVER_DECODE


def execute(pipe: redis.client.Pipeline) -> list[Any]:
    """`pipe.execute(raise_on_error=False)`: replies in order, a failed command's
    error as its value; connection errors (after redis-py's retries) raise."""
    state = vars(pipe)  # `transaction` is also a method name on redis.Redis
    plain = type(pipe) is redis.client.Pipeline and state.get("transaction") is False
    if not plain or pipe.watching or pipe.scripts or pipe.explicit_transaction:
        return pipe.execute(raise_on_error=False)
    stack = list(pipe.command_stack)
    if not stack:
        return []
    pool = pipe.connection_pool
    conn: Any = pool.get_connection()
    try:
        result: list[Any] = conn.retry.call_with_retry(
            lambda: _round_trip(conn, stack, pipe.response_callbacks),
            lambda _error: conn.disconnect(),
        )
        return result
    finally:
        pool.release(conn)
        pipe.command_stack = []


def _round_trip(conn: Any, stack: list[Any], callbacks: dict[Any, Any]) -> list[Any]:
    conn.send_packed_command(conn.pack_commands([args for args, _ in stack]))
    replies: list[Any] = []
    for args, options in stack:  # every reply is read, errors included
        try:
            reply = conn.read_response(disable_decoding=NEVER_DECODE in options)
        except redis.ResponseError as exc:
            replies.append(options.get(EMPTY_RESPONSE, exc))
            continue
        callback = callbacks.get(args[0])
        if callback is not None:
            extra = {
                k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")
            }
            reply = callback(reply, **extra)
        replies.append(reply)
    return replies
