"""What the quarantine index costs the milter, and how fast the desk lists it.

1. `RedisStore.finish` per message (one pipeline) with no hooks, with the
   quarantine hook on an accepted message (it files nothing), and on a
   quarantined message (it files an entry): the hot-path price of the index.
2. `Desk.select()` over an index of 1,000 and 5,000 held messages (all listed).

    python -m bench.desk [--messages 2000] [--rounds 3]

Against a real redis-server on loopback. Variants run interleaved in each round
so the ratios compare like with like on a shared machine; every loop is bounded
in count and in time (30 s per run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.support import finish_us, redis_store
from relaywarden.desk import index
from relaywarden.desk.postfix import PostfixTools
from relaywarden.desk.service import Desk
from relaywarden.identity import identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import Policy
from relaywarden.policy.desk import QuarantineSection
from relaywarden.store import Outcome, RedisStore
from relaywarden.verdict import Action, Finding, Verdict

RUN_SECONDS = 30.0
DATA = b"From: <promo@shop.example>\r\nSubject: Spring sale\r\n\r\nbody\r\n"
POLICY = Policy.model_validate({"quarantine": {"relay_name": "bench"}})


def outcome(action: Action, n: int) -> Outcome:
    msg = message_from_bytes(DATA, queue_id=f"4jbxmr3Lv{n:06d}zJ9Nx", rcpts=["a@example.org"])
    finding = Finding("blocks", "blocked", 0.0, {"reason": "bulk"}, action=action)
    verdict = Verdict(action, None, 0.0, (finding,), "RW-ABCDEFGHIJ")
    return Outcome(msg, identify(msg), verdict, {"event": "decision", "n": n})


def finish_run(store: RedisStore, variant: str, messages: int) -> float:
    """Microseconds per finish() call."""
    hooks = [] if variant == "no hooks" else [index.QuarantineRecorder(lambda: POLICY)]
    action = Action.QUARANTINE if variant == "hook, quarantined" else Action.ACCEPT
    RedisStore.finish_hooks[:] = hooks
    items = [outcome(action, n) for n in range(messages)]
    return finish_us(store, items, RUN_SECONDS)


def listing_ms(store: RedisStore, size: int) -> float:
    store.client.flushdb()
    RedisStore.finish_hooks[:] = [index.QuarantineRecorder(lambda: POLICY)]
    for n in range(size):
        store.finish(outcome(Action.QUARANTINE, n))
    # A desk on another host: no hold-queue lookup, only the index is measured.
    desk = Desk(store, QuarantineSection(relay_name="elsewhere"), PostfixTools("/nonexistent"))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assert len(desk.select(limit=size).entries) == size
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with redis_store("rw-bench-desk-") as (store, _):
        variants = ("no hooks", "hook, accepted", "hook, quarantined")
        results: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                results[variant].append(finish_run(store, variant, args.messages))
        base = statistics.median(results["no hooks"])
        print(f"finish() per message, median of {args.rounds} rounds x {args.messages} messages")
        for variant in variants:
            us = statistics.median(results[variant])
            print(f"  {variant:<18} {us:8.1f} us   x{us / base:.2f}")
        print("Desk.select() of the whole index, median of 5")
        for size in (1000, 5000):
            print(f"  {size:>5} entries      {listing_ms(store, size):8.1f} ms")


if __name__ == "__main__":
    main()
