"""A private rspamd (Debian's package) on loopback for tests and the bench.

Only its scanning worker runs, on a free loopback port; its DNS goes to the
devstack's DNS server and nowhere else; every module that would reach the
network (RBLs, fuzzy storage, DCC, URL redirector, phishing feeds, Redis-backed
ones) is off. Its hyperscan cache lives in one directory shared by all runs, so
only the first start on a machine compiles it (a minute or more on 2 cores).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from relaywarden.devstack.procs import LOOPBACK, Proc, free_port, wait_for_port

HS_CACHE = Path("/var/tmp/relaywarden-rspamd-hs")
NETWORK_MODULES = (
    "rbl",
    "fuzzy_check",
    "dcc",
    "asn",
    "phishing",
    "url_redirector",
    "emails",
    "neural",
    "ratelimit",
    "greylist",
    "history_redis",
    "reputation",
    "url_reputation",
    "replies",
    "mx_check",
    "rspamd_update",
    "metadata_exporter",
    "clickhouse",
    "elastic",
)

TOP = """.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "warning";
}}
worker "normal" {{
    bind_socket = "{host}:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""
OPTIONS = """dns {{ nameserver = ["{nameserver}"]; timeout = 0.5s; retransmits = 1; }}
hs_cache_dir = "{hs_cache}";
local_addrs = [];
"""


def available() -> bool:
    return shutil.which("rspamd") is not None


class RspamdServer:
    def __init__(self, workdir: Path, nameserver: str) -> None:
        self.workdir = workdir
        self.nameserver = nameserver
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _configure(self) -> Path:
        for sub in ("local.d", "override.d", "db", "run"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        HS_CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
        top = self.workdir / "rspamd.conf"
        top.write_text(TOP.format(host=LOOPBACK, port=self.port))
        (self.workdir / "override.d" / "options.inc").write_text(
            OPTIONS.format(nameserver=self.nameserver, hs_cache=HS_CACHE)
        )
        for module in NETWORK_MODULES:
            (self.workdir / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
        return top

    def start(self, timeout: float = 240.0) -> str:
        top = self._configure()
        wd = self.workdir
        argv = ["rspamd", "-c", str(top), "-f", "-i"]  # foreground; -i: may run as root here
        argv += [f"--var=LOCAL_CONFDIR={wd}", f"--var=DBDIR={wd / 'db'}"]
        argv += [f"--var=RUNDIR={wd / 'run'}", f"--var=LOGDIR={wd}"]
        self.proc = Proc(argv, "rspamd", wd / "rspamd.out", cwd=wd)
        try:
            wait_for_port(LOOPBACK, self.port, timeout, "rspamd")
        except TimeoutError:
            log = self.proc.log_text()[-3000:]
            self.stop()
            raise TimeoutError(f"rspamd did not start:\n{log}") from None
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
