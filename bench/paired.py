"""What the milter costs a busy relay, end to end: Postfix alone against Postfix
with `relaywarden run`, in rounds interleaved on the same machine.

    python -m bench.paired [--msgs 3000] [--rounds 3] [--sessions 20] [--warmup 200]
                           [--variants none,tcp,unix,tcp-2w,unix-2w] [--max-total 900]

Variant `tcp-all-answered` runs the adapter with every callback sent and
answered (the behaviour before issue 13 repaired pymilter's negotiation), and
`tcp-unpinned`, `tcp-2w-unpinned` run it with `[milter] pin_cpus = false`, for
same-run comparisons.

Postfix's own load tools drive it: `smtp-source` (--sessions parallel sessions,
one message per connection, --size bytes) into a private Postfix (the devstack's,
as in the tests), relaying to `smtp-sink`; the milter is started the way an
operator starts it, with the default policy, a plan no run can exhaust, and the
devstack's DNS server (its cache warmed by the warm-up batch). Each run starts a
fresh milter and Postfix; a round runs every variant once, the order rotating.

Reported per variant (medians over rounds): delivered/s (smtp-source start until
the sink has every message and the queue is empty), the *paired* ratio (this
run / the no-milter run of the same round: the figure to read on a noisy
machine), milter CPU per message (utime+stime of its whole process tree from
/proc), redis-server CPU per message, Redis commands per message (INFO
commandstats) and p50/p99 of the milter's decision time per stage without DNS
waits (from its decision log). A run counts only if every message reached the
sink. Every wait is bounded; --max-total stops starting new runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.procstat import process_cpu_seconds, tree_cpu_split
from bench.support import unlimited_policy
from relaywarden.devstack.dns import DnsServer
from relaywarden.devstack.milter import PROJECT_ROOT
from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, poll_until, wait_for_port
from relaywarden.devstack.redis import RedisServer

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SENDER, RCPT = "sender@example.com", "rcpt@example.net"  # both in the devstack's zones
QUEUE_DIRS = ("incoming", "active", "deferred", "maildrop", "hold")
# name -> (socket kind, workers); "none" is Postfix alone, the baseline.
VARIANTS: dict[str, tuple[str, int]] = {
    "none": ("", 0),
    "tcp": ("inet", 1),
    "unix": ("unix", 1),
    "tcp-2w": ("inet", 2),
    "unix-2w": ("unix", 2),
    # The adapter with every callback answered and none skipped (what pymilter's
    # broken negotiation gave until issue 13): `bench.variant_milter all-answered`.
    "tcp-all-answered": ("inet", 1),
    # [milter] pin_cpus = false: the scheduler moves the processes' threads freely.
    "tcp-unpinned": ("inet", 1),
    "tcp-2w-unpinned": ("inet", 2),
    # Over a unix socket with DATA sent but not answered (until issue 13's second
    # pass): `bench.variant_milter unix-data-noreply`.
    "unix-data-noreply": ("unix", 1),
}
# As in the anchor bench (shared/anchor-bench/pf-setup.sh): no throttling of
# its own, so Postfix and the milter are what limits the rate.
POSTFIX_TUNING = {
    "in_flow_delay": "0s",
    "default_process_limit": "200",
    "smtp_destination_concurrency_limit": "50",
}


def policy_text(nameserver: str, workers: int, pin: bool = True) -> str:
    milter = f'[milter]\nsocket_mode = "0666"\nworkers = {workers}\npin_cpus = {str(pin).lower()}\n'
    return "\n" + milter + unlimited_policy(nameserver)


@dataclass
class Run:
    variant: str
    round: int
    ok: bool = False
    rate: float = 0.0  # delivered/s
    milter_cpu: float = 0.0  # seconds over the measured batch
    milter_sys: float = 0.0  # of which in the kernel (syscalls, thread switches)
    redis_cpu: float = 0.0
    redis_cmds: int = 0
    redis_by_command: dict[str, int] = field(default_factory=dict)
    stages: dict[str, list[float]] = field(default_factory=dict)
    error: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.redis = RedisServer()
        self.dns = DnsServer(workdir / "dns")
        self.sink_port = free_port()
        self.sink: Proc | None = None
        self.redis_url = ""
        self.nameserver = ""

    def start(self) -> None:
        self.redis_url = self.redis.start(self.workdir / "redis")
        self.nameserver = self.dns.start()
        self.sink = Proc(
            [SMTP_SINK, "-c", "-u", "postfix", f"{LOOPBACK}:{self.sink_port}", "1000"],
            "smtp-sink",
            self.workdir / "sink.out",
        )
        wait_for_port(LOOPBACK, self.sink_port, 10, "smtp-sink")

    def stop(self) -> None:
        if self.sink is not None:
            self.sink.stop()
        self.dns.stop()
        self.redis.stop()

    # -- counters ----------------------------------------------------------
    def delivered(self) -> int:
        """smtp-sink -c's running count of completed DATA commands."""
        path = self.workdir / "sink.out"
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 400))
            found = re.findall(rb"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def redis_commands(self) -> dict[str, int]:
        """Calls per command so far (commands run inside Lua scripts included)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    # -- one run -----------------------------------------------------------
    def start_milter(self, variant: str, rundir: Path) -> tuple[Proc | None, str]:
        kind, workers = VARIANTS[variant]
        if not kind:
            return None, ""
        policy = rundir / "policy.toml"
        pin = not variant.endswith("-unpinned")
        policy.write_text(policy_text(self.nameserver, workers, pin))
        if kind == "unix":
            path = rundir / "milter.sock"
            listen, postfix_side = f"unix:{path}", f"unix:{path}"
        else:
            port = free_port()
            listen, postfix_side = f"inet:{port}@{LOOPBACK}", f"inet:{LOOPBACK}:{port}"
        argv = [sys.executable, "-m", "relaywarden", "run", "--config", str(policy)]
        for alternative in ("all-answered", "unix-data-noreply"):
            if variant.endswith(alternative):
                argv = [sys.executable, "-m", "bench.variant_milter", "--variant", alternative]
                argv += ["--config", str(policy)]
        argv += ["--listen", listen, "--redis-url", self.redis_url]
        argv += ["--nameserver", self.nameserver]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        proc = Proc(argv, variant, rundir / "milter.log", env=env, cwd=PROJECT_ROOT)
        if kind == "unix":
            poll_until(path.exists, 30, f"milter socket {path}")
        else:
            wait_for_port(LOOPBACK, port, 30, f"milter {variant}")
        return proc, postfix_side

    def profiler(self, proc: Proc, rundir: Path) -> Proc:
        """perf sampling the milter's threads (C and kernel frames) for the measured
        batch: DIR/<variant>-<round>.data, for `perf report -i FILE --no-children`.
        (py-spy cannot read this machine's processes; perf can. Python-level shares
        come from `bench.adapter --profile`.)"""
        out = self.args.perf / f"{rundir.name}.data"
        argv = ["perf", "record", "-g", "-F", "999", "-o", str(out), "-p", str(proc.pid)]
        return Proc(argv, "perf", rundir / "perf.log")

    def send(self, postfix: PostfixInstance, count: int) -> None:
        a = self.args
        argv = [SMTP_SOURCE, "-s", str(a.sessions), "-m", str(count), "-l", str(a.size)]
        argv += ["-f", SENDER, "-t", RCPT, "-M", "client.bench.test"]
        argv.append(f"{LOOPBACK}:{postfix.smtp_port}")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=a.send_timeout)
        if out.returncode != 0:
            raise RuntimeError(f"smtp-source exited {out.returncode}: {out.stdout[-300:]}")

    def wait_delivered(self, postfix: PostfixInstance, target: int) -> None:
        def done() -> bool:
            return self.delivered() >= target and queue_length(postfix) == 0

        poll_until(done, self.args.deliver_timeout, f"{target} messages at the sink", 0.02)

    def run(self, variant: str, round_no: int) -> Run:
        result = Run(variant, round_no)
        rundir = self.workdir / f"{variant}-{round_no}"
        rundir.mkdir()
        rundir.chmod(0o755)  # Postfix (user postfix) reaches its dirs and our socket
        proc, socket = None, ""
        postfix: PostfixInstance | None = None
        try:
            proc, socket = self.start_milter(variant, rundir)
            (rundir / "postfix").mkdir()
            postfix = PostfixInstance(
                self.sink_port, socket, base_dir=rundir / "postfix", extra_main_cf=POSTFIX_TUNING
            )
            postfix.start()
            base = self.delivered()
            if self.args.warmup:
                self.send(postfix, self.args.warmup)
                self.wait_delivered(postfix, base + self.args.warmup)
            log_offset = (rundir / "milter.log").stat().st_size if proc else 0
            base, cmds0 = self.delivered(), self.redis_commands()
            assert self.redis.proc is not None
            redis0 = process_cpu_seconds(self.redis.proc.pid)
            cpu0 = tree_cpu_split(proc.pid) if proc else (0.0, 0.0)
            spy = self.profiler(proc, rundir) if proc and self.args.perf else None
            started = time.perf_counter()
            self.send(postfix, self.args.msgs)
            self.wait_delivered(postfix, base + self.args.msgs)
            elapsed = time.perf_counter() - started
            if spy is not None:  # perf writes its file on SIGINT
                spy.popen.send_signal(signal.SIGINT)
                spy.stop(30)
            if proc:
                user, system = tree_cpu_split(proc.pid)
                result.milter_cpu = user + system - sum(cpu0)
                result.milter_sys = system - cpu0[1]
            result.redis_cpu = process_cpu_seconds(self.redis.proc.pid) - redis0
            cmds1 = self.redis_commands()
            result.redis_by_command = {
                k: n - cmds0.get(k, 0)
                for k, n in cmds1.items()
                if k != "info" and n > cmds0.get(k, 0)
            }
            result.redis_cmds = sum(result.redis_by_command.values())
            result.rate = self.args.msgs / elapsed
            if proc:
                result.stages = stage_latencies(rundir / "milter.log", log_offset)
            result.ok = True
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired, OSError) as exc:
            result.error = str(exc)[:300]
        finally:
            if postfix is not None:
                postfix.stop()
            if proc is not None:
                proc.stop(30)
        return result


def queue_length(postfix: PostfixInstance) -> int:
    return sum(len(files) for d in QUEUE_DIRS for _, _, files in os.walk(postfix.queue_dir / d))


def stage_latencies(log: Path, offset: int) -> dict[str, list[float]]:
    """Per-stage decision times without DNS waits, from the end-of-message log lines."""
    out: dict[str, list[float]] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            if not line.startswith(b"{") or b'"stages_ms"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for stage, ms in record.get("stages_ms", {}).items():
                out.setdefault(stage, []).append(float(ms))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def report(runs: list[Run], variants: list[str], msgs: int) -> str:
    baseline = {r.round: r.rate for r in runs if r.variant == "none" and r.ok}
    lines = [
        f"{'variant':<16} {'ok':>5} {'deliv/s':>8} {'paired':>7} {'milter CPU':>10} "
        f"{'kernel':>6} {'redis CPU':>9} {'redis':>6}   decision p50/p99 ms without DNS",
        f"{'':<16} {'':>5} {'median':>8} {'ratio':>7} {'ms/msg':>10} {'share':>6} "
        f"{'ms/msg':>9} {'cmd/m':>6}",
    ]
    for variant in variants:
        good = [r for r in runs if r.variant == variant and r.ok]
        total = len([r for r in runs if r.variant == variant])
        if not good:
            errors = {r.error for r in runs if r.variant == variant}
            lines.append(f"{variant:<16} {0:>2}/{total:<2} no successful run: {errors}")
            continue
        pairs = [r.rate / baseline[r.round] for r in good if baseline.get(r.round)]
        paired = f"{statistics.median(pairs):.2f}" if pairs else "-"
        cpu = statistics.median(r.milter_cpu for r in good) / msgs * 1e3
        kernel = statistics.median(r.milter_sys / r.milter_cpu if r.milter_cpu else 0 for r in good)
        rcpu = statistics.median(r.redis_cpu for r in good) / msgs * 1e3
        cmds = statistics.median(r.redis_cmds for r in good) / msgs
        stages: dict[str, list[float]] = {}
        for r in good:
            for stage, values in r.stages.items():
                stages.setdefault(stage, []).extend(values)
        lat = "  ".join(
            f"{s} {percentile(v, 50):.2f}/{percentile(v, 99):.2f}" for s, v in stages.items()
        )
        rate = statistics.median(r.rate for r in good)
        lines.append(
            f"{variant:<16} {len(good):>2}/{total:<2} {rate:>8.1f}"
            f" {paired:>7} {cpu:>10.3f} {kernel:>6.0%} {rcpu:>9.3f} {cmds:>6.2f}"
            f"   {lat or '-'}"
        )
    for variant in variants[1:]:
        last = [r for r in runs if r.variant == variant and r.ok][-1:]
        if last:
            per = ", ".join(
                f"{k} {n / msgs:.2f}" for k, n in sorted(last[0].redis_by_command.items())
            )
            lines.append(f"Redis commands per message, {variant}: {per}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired")
    parser.add_argument("--msgs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--variants", default="none,tcp,unix,tcp-2w,unix-2w")
    parser.add_argument("--send-timeout", type=float, default=240.0)
    parser.add_argument("--deliver-timeout", type=float, default=120.0)
    parser.add_argument(
        "--perf", type=Path, metavar="DIR", help="perf record each milter run into DIR"
    )
    parser.add_argument("--max-total", type=float, default=900.0, help="seconds; then stop")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "none" not in variants:
        parser.error(f"variants are {', '.join(VARIANTS)} and must include none: {unknown}")
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            parser.error(f"{tool} not found (Debian package postfix)")

    workdir = Path(tempfile.mkdtemp(prefix="rw-bench-paired-"))
    workdir.chmod(0o755)
    bench, runs, started = Bench(args, workdir), [], time.monotonic()
    try:
        bench.start()
        for round_no in range(args.rounds):
            shift = round_no % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                if time.monotonic() - started > args.max_total:
                    print(f"--max-total reached: {variant} round {round_no + 1} not run")
                    continue
                run = bench.run(variant, round_no)
                runs.append(run)
                print(
                    f"round {round_no + 1} {variant:<8} {'ok' if run.ok else 'FAILED'}"
                    f" {run.rate:7.1f} msg/s  milter CPU {run.milter_cpu:.2f} s {run.error}",
                    flush=True,
                )
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\n{args.msgs} messages of {args.size} bytes per run, {args.sessions} sessions of "
        f"smtp-source (one message per connection), warm-up {args.warmup}, "
        f"{args.rounds} rounds interleaved, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(report(runs, variants, args.msgs))
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
