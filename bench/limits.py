"""The rate-limit path against a real redis-server: Redis round trips per message,
decisions per second, and Redis memory per active VPS.

    python -m bench            (or: make bench; python -m bench.limits --vpses 10000)

Every loop is bounded in count and in time; the numbers are printed side by side
in one run so ratios compare like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile
import time
from pathlib import Path

import redis

from relaywarden.devstack.redis import RedisServer
from relaywarden.identity import Inventory, identify
from relaywarden.limits.fetch import fetch
from relaywarden.message import Message, normalise_ip
from relaywarden.policy import Policy, load_policy
from relaywarden.store import RedisStore
from tests.limits_support import count_round_trips, transaction

POLICY = Path(__file__).resolve().parents[1] / "policies" / "large-provider.toml"
TIME_BUDGET = 240.0  # seconds per measurement at most, whatever the counts


def vps_address(n: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.0")) + n))


def round_trips(store: RedisStore, policy: Policy, messages: int) -> dict[str, float]:
    counter = count_round_trips(store.client)
    transaction(store, policy, client="10.255.0.1")  # scripts loaded
    out = {}
    for label, rcpts in (("1 recipient", 1), ("10 recipients", 10)):
        before = counter()
        for n in range(messages):
            addrs = tuple(f"r{i}@example.org" for i in range(rcpts))
            transaction(store, policy, client=vps_address(50_000 + n), rcpts=addrs)
        out[label] = (counter() - before) / messages
    return out


def decisions_per_second(store: RedisStore, policy: Policy, count: int) -> dict[str, float]:
    """MAIL FROM decisions of the limit path alone, and a blocks-only lookup beside it."""
    inventory = Inventory(policy.customers)
    msgs = []
    for n in range(count):
        msg = Message(client_address=normalise_ip(vps_address(n % 500)), mail_from="a@shop.example")
        msgs.append((msg, identify(msg, inventory)))
    results = {}
    for label, run in (
        ("limit path (blocks + all windows)", lambda m, s: fetch(store, policy, s, m)),
        ("blocks lookup only", lambda m, s: store.blocks_for(s.subjects(m))),
    ):
        started, done = time.perf_counter(), 0
        for msg, sender in msgs:
            run(msg, sender)
            done += 1
            if time.perf_counter() - started > TIME_BUDGET:
                break
        results[label] = done / (time.perf_counter() - started)
    return results


def memory_per_vps(store: RedisStore, policy: Policy, vpses: int) -> dict[str, float]:
    client = store.client
    client.flushall()
    transaction(store, policy, client="10.255.0.1")
    base = int(client.info("memory")["used_memory"])
    started, sent = time.perf_counter(), 0
    for n in range(vpses):
        transaction(
            store,
            policy,
            client=vps_address(n),
            mail_from=f"u{n}@shop.example",
            rcpts=("a@example.org", "b@example.net"),
        )
        sent += 1
        if time.perf_counter() - started > TIME_BUDGET:
            break
    used = int(client.info("memory")["used_memory"]) - base
    # The decision event stream is the foundation's, not the limits': report it apart.
    stream = int(client.memory_usage(store.keys.events) or 0)
    return {
        "vpses": sent,
        "bytes per VPS, all keys": used / sent,
        "bytes per VPS, without the event stream": (used - stream) / sent,
        "keys per VPS": (int(client.dbsize()) - 3) / sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vpses", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    policy = load_policy(POLICY)
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        store = RedisStore(redis.Redis.from_url(server.start(Path(tmp))), policy.redis.key_prefix)
        print(f"policy: {POLICY.name}; redis-server on loopback\n")
        print("Redis round trips per message (MAIL, RCPTs, end of message):")
        for label, value in round_trips(store, policy, min(args.messages, 1000)).items():
            print(f"  {label:<40} {value:6.2f}")
        print("\nMAIL FROM decisions per second (one client thread):")
        rates = decisions_per_second(store, policy, min(args.decisions, 100_000))
        for label, value in rates.items():
            print(f"  {label:<40} {value:8.0f}/s")
        values = list(rates.values())
        print(f"  {'ratio limit path / blocks only':<40} {values[0] / values[1]:8.2f}")
        print(f"\nRedis memory after {args.vpses} synthetic VPSes each sent one message:")
        for label, value in memory_per_vps(store, policy, min(args.vpses, 100_000)).items():
            print(f"  {label:<40} {value:8.1f}")


if __name__ == "__main__":
    main()
