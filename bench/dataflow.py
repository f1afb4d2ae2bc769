"""Messages per second through real Postfix with the milter's DATA callback
answered (as shipped), marked no-reply, or absent, and with no milter at all.

Why it matters: over TCP, Postfix sends the DATA-stage macros and command and
then, when the milter answers nothing, its next small write waits for the ACK of
the previous one (Nagle) while the milter's kernel delays that ACK (~40 ms).

    python -m bench.dataflow [--messages 200] [--rounds 3]

Variants run interleaved in each round, one SMTP session per run, so the ratios
compare like with like on a noisy shared machine. Loops are bounded in count
and time (each run stops after --messages or 60 s, whichever comes first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from relaywarden.devstack.dns import DnsServer
from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, wait_for_port
from relaywarden.devstack.redis import RedisServer
from relaywarden.devstack.sink import Sink
from relaywarden.devstack.smtpclient import Session

VARIANTS = ("answered", "all-answered", "noreply", "absent", "no milter")
RUN_SECONDS = 60.0
# The shipped defaults, with a default plan wide enough that the rate limits are
# evaluated on every message but never refuse one during the run (a bench run
# is the very burst the burst detector exists for, so it is off here).
BENCH_POLICY = """
[plans.default]
messages = ["1000000/1m"]
recipients = ["1000000/1m"]

[limits.burst]
enabled = false

[limits.escalation]
enabled = false
"""
MESSAGE = (
    b"From: <orders@shop.example>\r\nTo: <buyer@example.org>\r\nSubject: bench\r\n"
    b"Date: Sat, 28 Nov 2026 09:12:00 +0000\r\nMessage-ID: <bench@shop.example>\r\n\r\n"
    + b"Your order has shipped.\r\n"
    * 40
)


def start_variant(
    variant: str, redis_url: str, nameserver: str, workdir: Path
) -> tuple[Proc | None, str]:
    if variant == "no milter":
        return None, ""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.variant_milter",
        "--variant",
        variant,
        "--listen",
        f"inet:{port}@{LOOPBACK}",
        "--redis-url",
        redis_url,
        "--nameserver",
        nameserver,
        "--config",
        str(workdir / "policy.toml"),
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = Proc(argv, variant, workdir / f"{variant}.log", env=env, cwd=PROJECT_ROOT)
    wait_for_port(LOOPBACK, port, 20, f"milter variant {variant}")
    return proc, f"inet:{LOOPBACK}:{port}"


def one_run(
    variant: str, n: int, redis_url: str, nameserver: str, sink: Sink, workdir: Path
) -> float:
    proc, socket = start_variant(variant, redis_url, nameserver, workdir)
    base = workdir / f"pf-{variant.replace(' ', '-')}-{time.monotonic_ns()}"
    base.mkdir()
    postfix = PostfixInstance(sink.port, socket, base_dir=base)
    try:
        postfix.start()
        with Session(LOOPBACK, postfix.smtp_port, xclient={"ADDR": "203.0.113.7"}) as session:
            session.send("orders@shop.example", ["buyer@example.org"], MESSAGE)  # warm-up
            started = time.perf_counter()
            sent = 0
            while sent < n and time.perf_counter() - started < RUN_SECONDS:
                result = session.send("orders@shop.example", ["buyer@example.org"], MESSAGE)
                if not result.accepted:
                    raise RuntimeError(f"{variant}: message refused: {result}")
                sent += 1
            elapsed = time.perf_counter() - started
        return sent / elapsed
    finally:
        postfix.stop()
        if proc is not None:
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--without-content",
        action="store_true",
        help="content view, campaigns and spam budget off (to measure what they cost)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rw-bench-"))
    workdir.chmod(0o755)
    extra = "\n[content]\nenabled = false\n\n[campaigns]\nenabled = false\n"
    (workdir / "policy.toml").write_text(BENCH_POLICY + (extra if args.without_content else ""))
    redis, sink, dns = RedisServer(), Sink(), DnsServer(workdir / "dns")
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        redis_url = redis.start(workdir / "redis")
        nameserver = dns.start()  # the test zones: never the machine's resolver
        sink.start()
        for r in range(args.rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                rate = one_run(variant, args.messages, redis_url, nameserver, sink, workdir)
                rates[variant].append(rate)
    finally:
        sink.stop()
        dns.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ref = statistics.median(rates["answered"])
    print(f"{args.messages} messages per run, one SMTP session, {args.rounds} rounds interleaved")
    print(f"{'variant':<12} {'median msg/s':>12} {'vs answered':>12}   runs")
    for variant in VARIANTS:
        med = statistics.median(rates[variant])
        runs = ", ".join(f"{x:.0f}" for x in rates[variant])
        print(f"{variant:<12} {med:>12.1f} {med / ref:>11.2f}x   {runs}")


if __name__ == "__main__":
    main()
