"""The whole real stack on loopback: Redis, the sink, RelayWarden and Postfix.

Used by `relaywarden demo` and by the end-to-end tests, so both exercise exactly
the same wiring an operator would build.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relaywarden.devstack.dns import DEFAULT_ZONES, DnsServer
from relaywarden.devstack.milter import MilterProcess
from relaywarden.devstack.postfix import PostfixInstance
from relaywarden.devstack.procs import poll_until
from relaywarden.devstack.redis import RedisServer
from relaywarden.devstack.sink import Sink
from relaywarden.devstack.smtpclient import SendResult, Session, send

Fate = Literal["delivered", "held", "discarded", "tempfailed", "rejected"]


@dataclass
class Outcome:
    fate: Fate
    result: SendResult

    @property
    def reply(self) -> str:
        return f"{self.result.code} {self.result.text}".strip()


class Stack:
    def __init__(
        self,
        policy: Path,
        *,
        workdir: Path | None = None,
        redis_url: str | None = None,
        milter_env: dict[str, str] | None = None,
        dns_zones: str = "",
        milter_socket: Path | None = None,
        sasl_users: dict[str, str] | None = None,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="relaywarden-"))
        self.policy = policy
        self.redis: RedisServer | None = None if redis_url else RedisServer()
        self.redis_url = redis_url or ""
        self.sink = Sink()
        self.milter: MilterProcess | None = None
        self.postfix: PostfixInstance | None = None
        self.milter_env = milter_env or {}
        self.milter_socket = milter_socket
        # user -> password: Postfix with real SASL AUTH (Cyrus, a sasldb of its own).
        self.sasl_users = sasl_users
        # Every stack answers DNS itself: the milter never asks the machine's resolver.
        self.dns = DnsServer(self.workdir / "dns", DEFAULT_ZONES + "\n" + dns_zones)

    def start(self) -> Stack:
        try:
            if self.redis is not None:
                self.redis_url = self.redis.start(self.workdir / "redis")
            self.sink.start()
            nameserver = self.dns.start()
            self.milter = MilterProcess(
                self.policy,
                self.redis_url,
                self.workdir,
                env=self.milter_env,
                nameservers=[nameserver],
                unix_socket=self.milter_socket,
            )
            self.milter.start()
            # Postfix's own user must traverse our temp dir (mkdtemp makes it 0700).
            self.workdir.chmod(0o755)
            (self.workdir / "postfix").mkdir(exist_ok=True)
            self.postfix = PostfixInstance(
                self.sink.port,
                self.milter.postfix_socket,
                base_dir=self.workdir / "postfix",
                sasl_users=self.sasl_users,
            )
            self.postfix.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything we started, by PID, newest first."""
        for stop in (
            self.postfix.stop if self.postfix else None,
            self.milter.stop if self.milter else None,
            self.sink.stop,
            self.dns.stop,
            self.redis.stop if self.redis else None,
        ):
            if stop is not None:
                # Keep stopping the rest whatever one of them does.
                with contextlib.suppress(Exception):
                    stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sending -------------------------------------------------------------
    @property
    def smtp_port(self) -> int:
        assert self.postfix is not None
        return self.postfix.smtp_port

    def session(self, **xclient: str) -> Session:
        return Session("127.0.0.1", self.smtp_port, xclient=xclient or None)

    def send(
        self,
        mail_from: str,
        rcpts: list[str],
        data: bytes,
        *,
        client: str = "203.0.113.7",
        login: str = "",
        timeout: float = 60,
    ) -> SendResult:
        xclient = {"ADDR": client, "NAME": "[UNAVAILABLE]"}
        if login:
            xclient["LOGIN"] = login
        return send(
            "127.0.0.1", self.smtp_port, mail_from, rcpts, data, xclient=xclient, timeout=timeout
        )

    def fate(self, result: SendResult, timeout: float = 30) -> Outcome:
        """Where a sent message ended up: delivered, held, discarded, or refused."""
        if not result.accepted:
            return Outcome("tempfailed" if 400 <= result.code < 500 else "rejected", result)
        assert self.postfix is not None and result.queue_id
        qid = result.queue_id
        seen: list[Fate] = []

        def at_sink() -> bool:
            # Postfix's Received header names the queue id the message had here.
            return any(qid in " ".join(m.headers("Received")) for m in self.sink.messages)

        def settled() -> bool:
            if at_sink():
                seen.append("delivered")
                return True
            entries = [e for e in self.postfix.queue() if e.get("queue_id") == qid]  # type: ignore[union-attr]
            if any(e.get("queue_name") == "hold" for e in entries):
                seen.append("held")
                return True
            if not entries:
                # Postfix removes a queue file only after the sink said 250, so a
                # message in no queue and (re-checked) not at the sink was dropped.
                seen.append("delivered" if at_sink() else "discarded")
                return True
            return False

        poll_until(settled, timeout, f"the fate of queue id {qid}", interval=0.1)
        return Outcome(seen[-1], result)
