"""A private redis-server on a free loopback port, with no persistence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Self

import redis

from relaywarden.devstack.procs import LOOPBACK, Proc, StopsOnExit, free_port, poll_until


def _answers_ping(port: int) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer(StopsOnExit):
    """redis-server in the foreground as our child, stopped by PID.

    `--save ""` and `--appendonly no` keep it memory-only, so a restart starts
    empty and no dump file is written anywhere but `workdir`.
    """

    def __init__(
        self,
        binary: str = "redis-server",
        start_timeout: float = 10.0,
        options: dict[str, str] | None = None,
    ) -> None:
        self.extra = options or {}  # more redis-server options, e.g. {"replicaof": ...}
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(f"{binary} not found on PATH")
        self.binary = found
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.workdir: Path | None = None
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("RedisServer was never started")
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, workdir: Path) -> str:
        """Start on a free port, wait until PING answers, return the redis:// URL."""
        if self.proc is not None and self.proc.running():
            raise RuntimeError(f"RedisServer already running (pid {self.proc.pid})")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        if self.port is None:
            self.port = free_port()
        self._launch()
        return self.url

    def _argv(self) -> list[str]:
        assert self.port is not None and self.workdir is not None
        options = {
            "port": str(self.port),
            "bind": LOOPBACK,
            "save": "",  # no RDB snapshots
            "appendonly": "no",  # no AOF
            "dir": str(self.workdir),
            "daemonize": "no",  # stay our child so we can stop it by PID
            "logfile": "",  # log to stdout, which Proc sends to redis.log
            **self.extra,
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        return argv

    def _launch(self) -> None:
        assert self.workdir is not None and self.port is not None
        self.proc = Proc(self._argv(), "redis-server", log_path=self.workdir / "redis.log")
        port, proc = self.port, self.proc

        def ready() -> bool:
            if not proc.running():
                raise RuntimeError(f"redis-server exited early:\n{proc.log_text()}")
            return _answers_ping(port)

        try:
            poll_until(ready, self.start_timeout, f"redis-server PING on port {port}")
        except BaseException:
            proc.stop()
            raise

    def stop(self) -> None:
        """Stop our redis-server by PID (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self) -> str:
        """Stop and start again on the same port (data is lost: no persistence)."""
        if self.workdir is None:
            raise RuntimeError("RedisServer was never started")
        self.stop()
        self._launch()
        return self.url

    def __enter__(self) -> Self:
        return self


class SentinelServer(StopsOnExit):
    """A Redis Sentinel (`redis-server CONF --sentinel`) watching one master on
    loopback, as our child, stopped by PID. Quick to notice a dead master."""

    def __init__(self, master_port: int, service: str = "relaywarden") -> None:
        found = shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH")
        self.binary = found
        self.master_port = master_port
        self.service = service
        self.port = free_port()
        self.proc: Proc | None = None

    def start(self, workdir: Path) -> str:
        """Start, wait until PING answers; the redis+sentinel:// URL of the service."""
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"  # Sentinel rewrites its own config file
        conf.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {workdir}\n"
            f"sentinel monitor {self.service} {LOOPBACK} {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        self.proc = Proc(
            [self.binary, str(conf), "--sentinel"], "redis-sentinel", log_path=workdir / "s.log"
        )
        port, proc = self.port, self.proc

        def ready() -> bool:
            if not proc.running():
                raise RuntimeError(f"redis-sentinel exited early:\n{proc.log_text()}")
            return _answers_ping(port)

        poll_until(ready, 10.0, f"redis-sentinel PING on port {port}")
        return f"redis+sentinel://{LOOPBACK}:{self.port}/{self.service}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class ClusterServers(StopsOnExit):
    """A real Redis Cluster on loopback: `masters` redis-server processes with
    `--cluster-enabled yes` (no replicas), joined by `redis-cli --cluster create`,
    each our child, stopped by PID. `start` returns the redis+cluster:// URL once
    every node says `cluster_state:ok`."""

    def __init__(self, masters: int = 3, start_timeout: float = 30.0) -> None:
        found = shutil.which("redis-cli")
        if found is None:
            raise FileNotFoundError("redis-cli not found on PATH")
        self.cli = found
        self.start_timeout = start_timeout
        self.servers = [
            RedisServer(
                options={
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",  # in the node's own workdir
                    "cluster-node-timeout": "2000",
                    # The bus port defaults to port + 10000: maybe taken, maybe > 65535.
                    "cluster-port": str(free_port()),
                }
            )
            for _ in range(masters)
        ]

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers if s.port is not None]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in self.ports)

    def start(self, workdir: Path) -> str:
        try:
            for n, server in enumerate(self.servers):
                server.start(workdir / f"node{n}")
            nodes = [f"{LOOPBACK}:{p}" for p in self.ports]
            done = subprocess.run(
                [self.cli, "--cluster", "create", *nodes, "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                check=False,
            )
            if done.returncode != 0:
                output = done.stdout + done.stderr
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
            poll_until(self._ok, self.start_timeout, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self.url

    def _ok(self) -> bool:
        for port in self.ports:
            client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1)
            try:
                info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            except redis.RedisError:
                return False
            finally:
                client.close()
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
