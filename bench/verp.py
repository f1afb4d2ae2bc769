"""Redis keys and memory after a mailing list sends with VERP: every message its
own return path (`news-bounces+rN=example.org@list.example`), one customer, one
VPS, through the real limit path (reserve at MAIL FROM, true-up at the end).

    python -m bench.verp                 (100,000 messages; bounded by --seconds)
    python -m bench.verp --messages 20000

The sender scope is keyed by the sender the return path stands for
(relaywarden/returnpath.py), so the list is one sender key, not one per message.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from relaywarden.devstack.redis import RedisServer
from relaywarden.policy import policy_from_dict
from relaywarden.store import RedisStore
from tests.limits_support import transaction

POLICY = {
    "plans": {
        "list": {
            "messages": ["1000000/1h"],
            "recipients": ["1000000/1h"],
            "unique_recipients": ["1000000/1h"],
            "customer": {"messages": ["1000000/1h"]},
            "sender": {"messages": ["1000000/1h"]},
        }
    },
    "customers": [
        {
            "id": "list-co",
            "plan": "list",
            "networks": ["192.0.2.25/32"],
            "domains": ["list.example"],
        }
    ],
    "limits": {"burst": {"enabled": False}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    args = parser.parse_args()
    policy = policy_from_dict(POLICY)
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        client = redis.Redis.from_url(server.start(Path(tmp)))
        store = RedisStore(client, policy.redis.key_prefix)
        transaction(store, policy, client="192.0.2.99")  # scripts loaded, stream created
        client.flushall()
        base = int(client.info("memory")["used_memory"])
        started, sent, accepted = time.perf_counter(), 0, 0
        for n in range(min(args.messages, 1_000_000)):
            result = transaction(
                store,
                policy,
                client="192.0.2.25",
                mail_from=f"news-bounces+r{n}=example.org@list.example",
                rcpts=(f"r{n}@example.org",),
            )
            sent += 1
            accepted += result.accepted
            if time.perf_counter() - started > args.seconds:
                break
        elapsed = time.perf_counter() - started
        used = int(client.info("memory")["used_memory"]) - base
        keys = list(client.scan_iter(match=f"{policy.redis.key_prefix}:l:*"))
        limit_keys = len(keys)
        # MEMORY USAGE with SAMPLES 0 counts every element (the default samples 5).
        limit_bytes = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)
        stream = int(client.memory_usage(store.keys.events, samples=0) or 0)
        senders = sum(
            1
            for k in client.scan_iter(match=f"{policy.redis.key_prefix}:l:*}}:s*")
            if not k.endswith(b":q")
        )
        print(
            f"{sent} VERP messages from one customer and VPS ({accepted} accepted), {elapsed:.0f} s"
        )
        print(f"  {'rate-limit keys (all scopes, HyperLogLogs)':<48} {limit_keys:8d}")
        print(f"  {'sender-scope keys':<48} {senders:8d}")
        print(f"  {'memory of the rate-limit keys (bytes)':<48} {limit_bytes:8d}")
        print(f"  {'Redis used_memory growth, all keys (bytes)':<48} {used:8d}")
        print(f"  {'of which the decision event stream (bytes)':<48} {stream:8d}")


if __name__ == "__main__":
    main()
