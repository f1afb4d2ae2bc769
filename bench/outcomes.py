"""What outcomes, logins and complaints cost, against a real redis-server.

1. The watcher: lines per second over a recorded Postfix log (the devstack's
   tests/data/maillog-postfix.txt repeated with fresh queue ids, each
   attributed), from the file to the counters in Redis.
2. MAIL FROM: the rate-limit round trip (`limits.fetch`) with outcomes and
   logins off, with outcomes on (one HGETALL per subject), and with a SASL
   login as well (logins.lua); interleaved rounds.
3. End of message: `RedisStore.finish` with and without the queue id record.
4. Redis round trips per message with everything on (1 recipient).

    python -m bench.outcomes [--copies 200] [--messages 2000] [--rounds 3]

Every loop is bounded in count and in time (RUN_SECONDS per run).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

from bench import support
from relaywarden.identity import Inventory, identify
from relaywarden.limits.fetch import fetch
from relaywarden.message import Message, normalise_ip
from relaywarden.outcomes import record
from relaywarden.outcomes.record import Identity, identity_key
from relaywarden.outcomes.watcher import Watcher
from relaywarden.policy import Policy
from relaywarden.store import Outcome, RedisStore
from relaywarden.verdict import Action, Verdict
from tests.limits_support import count_round_trips, transaction

RUN_SECONDS = 30.0
LOG = Path(__file__).resolve().parents[1] / "tests" / "data" / "maillog-postfix.txt"
QID = re.compile(
    r"\b([0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,20}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{3,8})\b"
)


def policy(outcomes: bool, logins: bool) -> Policy:
    return Policy.model_validate(
        {
            "quarantine": {"relay_name": "bench"},
            "outcomes": {"enabled": outcomes, "start_at": "start", "batch": 2000},
            "logins": {"enabled": logins},
            "customers": [{"id": "c1", "networks": ["10.0.0.0/8"], "sasl_users": ["alice"]}],
        }
    )


def recorded_log(workdir: Path, store: RedisStore, copies: int) -> tuple[Path, int]:
    """The recording `copies` times, queue ids made unique per copy and attributed."""
    text = LOG.read_text()
    out, pipe = [], store.client.pipeline(transaction=False)
    for n in range(copies):
        copy = QID.sub(lambda m, n=n: m.group(1)[:-4] + f"{n:04d}", text)
        out.append(copy)
        for qid in set(QID.findall(copy)):
            ident = Identity(f"10.0.{n % 250}.{n // 250}", "c1", "", "a@shop.example", "RW-1")
            pipe.set(identity_key(store.keys.prefix, "bench", qid), ident.dumps())
    pipe.execute()
    path = workdir / "maillog"
    path.write_text("".join(out))
    return path, sum(c.count("\n") for c in out)


def watcher_lines_per_second(store: RedisStore, workdir: Path, copies: int) -> tuple[float, int]:
    path, _lines = recorded_log(workdir, store, copies)
    watcher = Watcher(store, policy(True, False), str(path))
    started = time.perf_counter()
    deadline = time.monotonic() + RUN_SECONDS
    while watcher.step() and time.monotonic() < deadline:
        pass
    elapsed = time.perf_counter() - started
    return watcher.totals.lines / elapsed, watcher.totals.lines


def mail_from_us(store: RedisStore, pol: Policy, login: str, messages: int) -> float:
    inventory = Inventory(pol.customers)
    msgs = []
    for n in range(messages):
        msg = Message(
            client_address=normalise_ip(f"10.1.{n % 200}.{n % 250}"),
            sasl_user=login,
            mail_from="a@shop.example",
        )
        msgs.append((msg, identify(msg, inventory)))
    started, done = time.perf_counter(), 0
    deadline = time.monotonic() + RUN_SECONDS
    for msg, sender in msgs:
        fetch(store, pol, sender, msg)
        done += 1
        if time.monotonic() > deadline:
            break
    return (time.perf_counter() - started) / done * 1e6


def finish_us(store: RedisStore, pol: Policy, with_record: bool, messages: int) -> float:
    RedisStore.finish_hooks[:] = [record.IdentityRecorder(lambda: pol)] if with_record else []
    items = []
    for n in range(messages):
        msg = Message(client_address=normalise_ip("10.2.0.1"), mail_from="a@shop.example")
        msg.queue_id = f"4jbxmr3Lv{n:06d}zJ9Nx"
        verdict = Verdict(Action.ACCEPT, None, 0.0, (), "RW-ABCDEFGHIJ")
        items.append(Outcome(msg, identify(msg), verdict, {"stage": "eom", "n": n}))
    return support.finish_us(store, items, RUN_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with support.redis_store("rw-bench-outcomes-") as (store, workdir):
        rate, lines = watcher_lines_per_second(store, workdir, args.copies)
        print(f"watcher: {rate:,.0f} lines/s over {lines:,} recorded lines (all attributed)")

        variants = {
            "outcomes off, logins off": (policy(False, False), ""),
            "outcomes on": (policy(True, False), ""),
            "SASL login, logins off": (policy(True, False), "alice"),
            "SASL login, logins on": (policy(True, True), "alice"),
        }
        for pol, login in variants.values():
            mail_from_us(store, pol, login, 50)  # scripts loaded, connections open
        results: dict[str, list[float]] = {v: [] for v in variants}
        server_us: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for name, (pol, login) in variants.items():
                store.client.config_resetstat()
                results[name].append(mail_from_us(store, pol, login, args.messages))
                # Redis's own time for the round trip's commands: steadier than
                # the wall clock on a shared machine.
                stats = store.client.info("commandstats")
                busy = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_info")
                server_us[name].append(busy / args.messages)
        print(f"MAIL FROM round trip (limits.fetch), median of {args.rounds} x {args.messages}")
        for name in variants:
            us = statistics.median(results[name])
            busy = statistics.median(server_us[name])
            print(f"  {name:<26} {us:7.1f} us wall, {busy:6.1f} us of Redis time")

        eom: dict[bool, list[float]] = {False: [], True: []}
        eom_redis: dict[bool, list[float]] = {False: [], True: []}
        pol = policy(True, True)
        for _ in range(args.rounds):
            for flag in (False, True):
                store.client.config_resetstat()
                eom[flag].append(finish_us(store, pol, flag, args.messages))
                stats = store.client.info("commandstats")
                busy = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_info")
                eom_redis[flag].append(busy / args.messages)
        print("end of message (RedisStore.finish), median")
        for flag, label in ((False, "without the queue id record"), (True, "with it")):
            wall, busy = statistics.median(eom[flag]), statistics.median(eom_redis[flag])
            print(f"  {label:<27} {wall:7.1f} us wall, {busy:6.1f} us of Redis time")

        RedisStore.finish_hooks[:] = [record.IdentityRecorder(lambda: pol)]
        counter = count_round_trips(store.client)
        transaction(store, pol, client="10.3.0.1", login="alice")
        before = counter()
        for n in range(200):
            transaction(store, pol, client=f"10.3.{n % 200}.1", login="alice")
        print(
            f"Redis round trips per message, outcomes + logins on: {(counter() - before) / 200:.2f}"
        )


if __name__ == "__main__":
    main()
