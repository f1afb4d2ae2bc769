"""Header and sender checks on the corpus: decisions/s with a warm DNS cache vs.
a cold one (every lookup asked of the test DNS server), and the cost of one cold
lookup, side by side in one run.

    python -m bench.headers [--rounds N]

The DNS server is the devstack's (a dnslib subprocess on loopback), so a cold
lookup here is a loopback round trip plus parsing: a floor for the real cost.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from relaywarden.checks import Context, Stage
from relaywarden.devstack.dns import DnsServer
from relaywarden.dns import Resolver
from relaywarden.engine import CHECKS, run_checks
from relaywarden.identity import Inventory, identify
from relaywarden.message import Message, message_from_bytes
from relaywarden.policy import Policy, policy_from_dict

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"
SKIP = {"dns-timeout"}  # a timeout measures the timeout, not the checks
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC).timestamp()
TIME_CAP = 60.0  # seconds per measurement, whatever --rounds says
CHECKS_MEASURED = [c for c in CHECKS if c.name.startswith(("headers", "sender"))]
POLICY = {
    "relay": {"hostnames": ["relay.example.net"], "outbound_ips": ["192.0.2.10"]},
    "brands": {"protected": ["paypal.com"]},
    "customers": [
        {"id": "shop", "networks": ["203.0.113.0/24"], "domains": ["shop.example"]},
    ],
}


def corpus() -> list[Message]:
    files = sorted(p for p in CORPUS.glob("*.eml") if p.stem not in SKIP)
    return [message_from_bytes(p.read_bytes(), client_address="203.0.113.7") for p in files]


def decide_all(messages: list[Message], policy: Policy, resolver: Resolver) -> int:
    """The measured checks on every message, both stages; returns decisions made."""
    inventory = Inventory(policy.customers)
    for msg in messages:
        session = resolver.session()
        sender = identify(msg, inventory)
        for stage in (Stage.MAIL, Stage.EOM):
            ctx = Context(msg, sender, policy, None, session, NOW)  # type: ignore[arg-type]
            run_checks([c for c in CHECKS_MEASURED if c.stage == stage], ctx)
    return len(messages)


def measure(rounds: int, step: object) -> tuple[int, float]:
    done, started = 0, time.perf_counter()
    for _ in range(rounds):
        done += step()  # type: ignore[operator]
        if time.perf_counter() - started > TIME_CAP:
            break
    return done, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.headers")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    policy = policy_from_dict(POLICY)
    messages = corpus()
    server = DnsServer(Path(tempfile.mkdtemp(prefix="rw-bench-")) / "dns")
    nameserver = server.start()
    try:
        warm = Resolver([nameserver])
        decide_all(messages, policy, warm)  # fill the cache
        queries_before = warm.queries
        warm_n, warm_s = measure(args.rounds, lambda: decide_all(messages, policy, warm))
        assert warm.queries == queries_before, "warm rounds went to the wire"

        cold_resolvers: list[Resolver] = []

        def cold_round() -> int:
            cold_resolvers.append(Resolver([nameserver]))
            return decide_all(messages, policy, cold_resolvers[-1])

        cold_n, cold_s = measure(max(1, args.rounds // 10), cold_round)
        cold_queries = sum(r.queries for r in cold_resolvers)

        single = Resolver([nameserver])
        lookups, started = 0, time.perf_counter()
        for n in range(min(500, args.rounds * 5)):
            single.session().lookup(f"q{n}.shop.example", "A")  # distinct names: all cold
            lookups += 1
        cold_lookup_s = (time.perf_counter() - started) / lookups
        warm_lookup_s = time_cached_lookup(single, lookups)
    finally:
        server.stop()

    rows = [
        ("warm cache", warm_n / warm_s, warm_s / warm_n * 1e3, 0.0),
        ("cold cache", cold_n / cold_s, cold_s / cold_n * 1e3, cold_queries / cold_n),
    ]
    print(f"corpus: {len(messages)} messages, checks: {', '.join(c.name for c in CHECKS_MEASURED)}")
    print(f"{'':12} {'decisions/s':>12} {'ms/decision':>12} {'DNS queries/msg':>16}")
    for label, rate, ms, queries in rows:
        print(f"{label:12} {rate:12.0f} {ms:12.3f} {queries:16.2f}")
    print(f"warm/cold ratio: {rows[0][1] / rows[1][1]:.1f}x")
    print(
        f"one lookup: cold {cold_lookup_s * 1e3:.3f} ms (loopback DNS server), "
        f"cached {warm_lookup_s * 1e6:.2f} us, ratio {cold_lookup_s / warm_lookup_s:.0f}x"
    )


def time_cached_lookup(resolver: Resolver, count: int) -> float:
    session_started = time.perf_counter()
    for n in range(count):
        resolver.session().lookup(f"q{n}.shop.example", "A")
    return (time.perf_counter() - session_started) / count


if __name__ == "__main__":
    main()
