"""The milter adapter driven in-process: CPU time per message, where it goes, and
whether memory stays flat.

    python -m bench.adapter [--messages 2000] [--profile] [--top 25]
    python -m bench.adapter --rss --messages 200000 [--max-seconds 900]

pymilter's TestCtx plays the MTA (callbacks in libmilter's order, one message per
connection like smtp-source), against a real redis-server and the devstack's DNS
server, with the same policy as `bench.paired` (default policy, generous plan).
CPU time is the process's own (`time.process_time`, plus redis-server's from
/proc), so a busy shared machine makes the run slower but not the figure bigger.
What TestCtx itself costs is in the figure too (a few µs per callback; libmilter's
C dispatch in production is cheaper). Bounded: --messages or --max-seconds,
whichever comes first.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import resource
import shutil
import statistics
import tempfile
import time
from io import BytesIO
from pathlib import Path

import Milter
import redis as redis_client
from Milter.testctx import TestCtx

from bench.procstat import process_cpu_seconds
from bench.support import unlimited_policy
from relaywarden.devstack.dns import DnsServer
from relaywarden.devstack.redis import RedisServer
from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.runtime import Overrides, Runtime

SENDER = "sender@example.com"
RCPT = "rcpt@example.net"
# What smtp-source sends (headers it writes, a ~2 KB body), as in bench.paired;
# --body words for running text instead.
HEADERS = [
    ("From", f"<{SENDER}>"),
    ("To", f"<{RCPT}>"),
    ("Date", "Sun, 29 Nov 2026 12:00:00 +0000"),
    ("Message-Id", "<20261129120000.1234@client.bench.test>"),
]
BODIES = {
    # smtp-source -l 2000 sends numbered lines of X ("1XXX…"): no words, so no
    # campaign fingerprint.
    "x": b"".join(str(n).encode() + b"X" * (79 - len(str(n))) + b"\r\n" for n in range(1, 26)),
    # Running text (~600 words): the content view fingerprints it, as real mail.
    "words": b"La de da de da 1.\r\nLa de da de da 2.\r\n" * 52,
}
BODY = BODIES["x"]
# TestCtx takes a NOREPLY answer for a failure, so it plays an MTA that answers
# every callback (Postfix negotiates no-reply; the CPU cost is the same).
NO_REPLY_BITS = (
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)  # fmt: skip


def bench_policy(nameserver: str) -> str:
    """The anchor bench's policy: defaults, a plan no run can exhaust, our DNS server."""
    return "\n" + unlimited_policy(nameserver) + '[log]\nlevel = "warning"\n'


def one_message(n: int) -> int:
    """One SMTP connection with one message, as libmilter would call us."""
    ctx = TestCtx()
    ctx._setsymval("i", f"4B{n:010d}")
    if ctx._connect(host="client.bench.test", helo="client.bench.test", ip="127.0.0.1") != 0:
        raise RuntimeError("connect refused")
    ctx._envfrom(f"<{SENDER}>")
    ctx._envrcpt(f"<{RCPT}>")
    ctx._data()
    for name, value in HEADERS:
        ctx._priv.header_bytes(name, value.encode())
    ctx._eoh()
    ctx._feed_body(BytesIO(BODY))
    rc = int(ctx._eom())
    ctx._close()
    return rc


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adapter")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the measured messages")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--body", choices=sorted(BODIES), default="x", help="x: as smtp-source")
    parser.add_argument("--rss", action="store_true", help="print RSS every tenth of the run")
    parser.add_argument("--dump", type=Path, help="write the raw profile here (pstats format)")
    args = parser.parse_args(argv)
    global BODY
    BODY = BODIES[args.body]

    workdir = Path(tempfile.mkdtemp(prefix="rw-bench-adapter-"))
    redis, dns = RedisServer(), DnsServer(workdir / "dns")
    TestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF & ~NO_REPLY_BITS, 0, 0]
    try:
        url = redis.start(workdir / "redis")
        policy = workdir / "policy.toml"
        policy.write_text(bench_policy(dns.start()))
        runtime = Runtime.start(policy, Overrides(redis_url=url))
        RelayWardenMilter.runtime = runtime
        Milter.factory = RelayWardenMilter
        for n in range(args.warmup):  # DNS cache, Lua scripts loaded, imports done
            one_message(n)
        assert redis.proc is not None
        run(args, redis.proc.pid, url)
    finally:
        redis.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_calls(url: str) -> dict[str, int]:
    client = redis_client.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def run(args: argparse.Namespace, redis_pid: int, url: str) -> None:
    gc.collect()
    calls0 = redis_calls(url)
    # Timed by process CPU time: waiting for Redis or DNS is not what we are cutting.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    rss: list[tuple[int, int]] = [(0, rss_kib())]
    step = max(1, args.messages // 10)
    redis_cpu0 = process_cpu_seconds(redis_pid)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done, refused = 0, 0
    if profiler:
        profiler.enable()
    while done < args.messages and time.perf_counter() - wall0 < args.max_seconds:
        if one_message(done + args.warmup) != Milter.ACCEPT:
            refused += 1
        done += 1
        if args.rss and done % step == 0:
            rss.append((done, rss_kib()))
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    redis_cpu = process_cpu_seconds(redis_pid) - redis_cpu0
    calls = {k: n - calls0.get(k, 0) for k, n in redis_calls(url).items() if k != "info"}
    print(f"{done} messages in {wall:.1f} s wall ({refused} not accepted)")
    print(f"adapter CPU per message: {cpu / done * 1e3:.3f} ms (process time, TestCtx included)")
    print(f"redis-server CPU per message: {redis_cpu / done * 1e3:.3f} ms")
    per = ", ".join(f"{k} {n / done:.2f}" for k, n in sorted(calls.items()) if n)
    print(f"Redis commands per message: {sum(calls.values()) / done:.2f} ({per})")
    if args.rss:
        print(f"max RSS (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")
        for n, kib in rss:
            print(f"RSS after {n:>8} messages: {kib / 1024:8.1f} MiB")
        tail = [kib for _, kib in rss[len(rss) // 2 :]]
        print(
            f"second half: RSS spread {(max(tail) - min(tail)) / 1024:.1f} MiB, "
            f"median {statistics.median(tail) / 1024:.1f} MiB"
        )
    if profiler and args.dump:
        profiler.dump_stats(args.dump)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
