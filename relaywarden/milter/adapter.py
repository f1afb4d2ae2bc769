"""pymilter callbacks: collect the facts of a transaction into a Message, ask the
engine at MAIL FROM, each RCPT TO and end of message, and apply its verdict.

One instance per SMTP connection, one thread per connection (libmilter's model);
per-message state lives on the instance and is reset at each MAIL FROM.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import Milter

from relaywarden import dkimverify, engine, metrics, trace
from relaywarden.checks import Stage
from relaywarden.content import budget, campaigns
from relaywarden.content.stream import ContentStream
from relaywarden.decisionlog import decision_fields, log_decision
from relaywarden.dns import DnsSession
from relaywarden.identity import Sender, identify
from relaywarden.message import BodyDigest, IPAddress, Message, normalise_ip
from relaywarden.milter.apply import apply_verdict, internal_error, set_reply
from relaywarden.refs import new_ref
from relaywarden.rollout import shadow
from relaywarden.runtime import Generation, Runtime
from relaywarden.store import Outcome, RedisStore
from relaywarden.verdict import Action, Finding, TempFailReply, Verdict

log = logging.getLogger("relaywarden.milter")

SHUTTING_DOWN = TempFailReply(421, "4.3.2", "Relay filter restarting, please retry shortly")


class Transactions:
    """Transactions between MAIL FROM and their end, so shutdown can wait for them.

    libmilter's own stop aborts open sessions; instead, on SIGTERM new
    transactions are turned away with 421 (the client retries, nothing is lost)
    and the ones in flight are allowed to finish.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self.draining = threading.Event()

    def begin(self) -> None:
        with self._lock:
            self._count += 1

    def end(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._count


TRANSACTIONS = Transactions()


def guarded(callback: Callable[..., int]) -> Callable[..., int]:
    """No exception leaves a callback: the client gets 451 4.3.0, the log the traceback."""

    @functools.wraps(callback)
    def wrapper(self: RelayWardenMilter, *args: Any) -> int:
        try:
            return callback(self, *args)
        except Exception:
            metrics.INTERNAL_ERRORS.inc()
            log.exception(
                "internal error in %s (queue id %s, ref %s, client %s)",
                callback.__name__,
                self.message.queue_id or "-",
                self.ref,
                self.client_text,
            )
            return internal_error(self, self.ref)

    return wrapper


class RelayWardenMilter(Milter.Base):  # type: ignore[misc]
    runtime: ClassVar[Runtime]
    dkim_body: dkimverify.BodySpool | None

    def __init__(self) -> None:
        self.client_text = ""
        self.client_address: IPAddress | None = None
        self.client_name = ""
        self.helo = ""
        self.in_transaction = False
        self._connected = False  # close() may come without connect() (negotiation failed)
        self._fresh()

    def _end_transaction(self) -> None:
        if self.in_transaction:
            TRANSACTIONS.end()
            self.in_transaction = False

    def _reset(self) -> None:
        self._end()
        self._fresh()

    def _end(self) -> None:
        """What a transaction holds is given back: the in-flight count, a reservation
        (with its recipient decisions), the DKIM body spool."""
        self._end_transaction()
        self._flush_deferred()
        spool, self.dkim_body = self.dkim_body, None
        if spool is not None:
            spool.close()

    def _fresh(self) -> None:
        """State for the next transaction (the connection's facts carried over)."""
        self.ref = new_ref()
        # Until MAIL FROM takes its own: the generation in force now.
        self.gen: Generation = type(self).runtime.current
        self.message = Message(
            client_address=self.client_address, client_name=self.client_name, helo=self.helo
        )
        self.sender: Sender = identify(self.message)
        self.dns: DnsSession | None = None  # one DNS budget per message, set at MAIL FROM
        self.digest = BodyDigest()
        self.content: ContentStream | None = None  # the bounded view, built with the body
        self.body_open = False  # _open_body has run for this transaction
        # Findings of an accepted MAIL/RCPT stage (bursts, scores, a quarantine): they
        # take effect in the end-of-message verdict, its score, log and escalation.
        self.carried: list[Finding] = []
        # Per-recipient decisions, recorded with the transaction's last one (one round trip).
        self.deferred: list[dict[str, Any]] = []
        self.started = time.monotonic()
        # Decision time per stage without DNS waits, ms (logged at end of message).
        self.stages_ms: dict[str, float] = {}
        # Customer-supplied headers with our trace header's name, removed at the stamp.
        self.trace_headers_seen = 0
        # The body, kept (bounded) only when a DKIM signature may need it (_open_body).
        self.dkim_body = None

    # -- negotiation -----------------------------------------------------
    def negotiate(self, opts: list[int]) -> int:
        """What Postfix sends and waits for: pymilter's Base.negotiate, repaired,
        plus no body when no check reads it under the policy in force.

        pymilter 1.0.5's Base.setsymlist hands its C module bytes where that wants
        str; the TypeError makes Base.negotiate answer ALL_OPTS, and then nothing
        is negotiated: every callback sent and answered (@noreply, @nocallback
        and @symlist ignored), every macro sent. pymilter's TestCtx takes bytes
        too, so only a real MTA showed it.
        """
        try:
            self._actions, offered, _, _ = opts
            if self._actions & Milter.SETSYMLIST:
                for name, stage in Milter.MACRO_CALLBACKS.items():
                    macros = getattr(getattr(self, name), "_symlist", None)
                    if macros:
                        self._ctx.setsymlist(stage, " ".join(macros))
            protocol = offered & ~self.protocol_mask()
            if offered & Milter.P_NOBODY and not engine.body_needed(self.runtime.policy):
                protocol |= Milter.P_NOBODY  # SMFIP_NOBODY: no body chunks at all
            opts[1] = self._protocol = protocol
            opts[2] = opts[3] = 0
        except Exception:
            log.exception("milter negotiation failed: Postfix will send every callback")
            return int(Milter.ALL_OPTS)
        return int(Milter.CONTINUE)

    # -- connection ------------------------------------------------------
    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        metrics.OPEN_CONNECTIONS.inc()
        self._connected = True
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            # libmilter gives (address, port, ...); pymilter's TestCtx a bare address.
            address = hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr
            self.client_address = normalise_ip(str(address))
        self.client_name = hostname or ""
        self.client_text = str(self.client_address or hostname)
        return int(Milter.CONTINUE)

    # No check reads the HELO name: Postfix is told not to send it at all (one
    # packet and one callback less per connection). To use it, make this @noreply.
    @Milter.nocallback
    def hello(self, hostname: str) -> int:
        self.helo = hostname or ""
        return int(Milter.CONTINUE)

    # -- envelope ----------------------------------------------------------
    @Milter.symlist("i", "{auth_authen}")
    @guarded
    def envfrom(self, mail_from: str, *params: str) -> int:
        self._reset()
        if TRANSACTIONS.draining.is_set():
            set_reply(self, SHUTTING_DOWN)
            return int(Milter.TEMPFAIL)
        TRANSACTIONS.begin()
        self.in_transaction = True
        msg = self.message
        msg.mail_from = mail_from.strip().removeprefix("<").removesuffix(">")
        msg.mail_params = _params(params)
        msg.sasl_user = self.getsymval("{auth_authen}") or ""
        msg.queue_id = self.getsymval("i") or ""
        # One generation of policy, inventory, store and resolver for the whole
        # transaction, however a reload lands meanwhile.
        rt = self.gen = self.runtime.current
        self.sender = identify(msg, rt.inventory, rt.policy.identity.ipv6_prefix)
        self.dns = rt.resolver.session() if rt.resolver is not None else None
        status = self._decide(Stage.MAIL)
        if status != Milter.CONTINUE:
            self._end_transaction()
        return status

    @Milter.symlist("i")
    @guarded
    def envrcpt(self, rcpt: str, *params: str) -> int:
        address = rcpt.strip().removeprefix("<").removesuffix(">")
        self.message.queue_id = self.message.queue_id or self.getsymval("i") or ""
        status = self._decide(Stage.RCPT, rcpt=address)
        if status == Milter.CONTINUE:
            self.message.add_rcpt(address)
        return status

    @guarded
    def data(self) -> int:
        # Answered (not @noreply) on purpose: a reply here carries the TCP ACK that
        # stops Nagle + delayed ACK from stalling every message by ~40 ms.
        return int(Milter.CONTINUE)

    @classmethod
    def for_listen(cls, listen: str) -> type[RelayWardenMilter]:
        """The class to serve `listen` with: over a unix socket (no Nagle there)
        Postfix does not send DATA at all, which saves it a packet and us a
        callback (a GIL hand-over) per message."""
        if not listen.startswith(("unix:", "local:")):
            return cls

        def data(self: RelayWardenMilter) -> int:  # the name tells pymilter which callback
            return int(Milter.CONTINUE)

        # pymilter caches the mask on the class, and a subclass would find its
        # parent's: state the subclass's own.
        mask = cls.protocol_mask() & ~Milter.P_NODATA
        members = {"data": Milter.nocallback(data), "_protocol_mask": mask}
        return type(f"{cls.__name__}OverUnix", (cls,), members)

    # -- content -------------------------------------------------------------
    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        self.message.add_header(name, value)
        if name.lower() == self.runtime.policy.trace.header.lower():
            self.trace_headers_seen += 1  # counted apart: add_header keeps only so many
        return int(Milter.CONTINUE)

    # Nothing needs the end of the headers as its own step: what the body is read
    # into is set up at its first chunk (or at the end of a message without one),
    # so Postfix is told not to send it (one packet and one callback less).
    @Milter.nocallback
    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    def _open_body(self) -> None:
        """The body's readers, from the headers as they came: the DKIM spool when a
        signature may need the body, the bounded content view."""
        self.body_open = True
        if dkimverify.has_signature(self.message):
            limit = self.runtime.policy.checks.sender.dkim_max_body
            self.dkim_body = dkimverify.BodySpool(limit)
            self.message.notes[dkimverify.BODY_NOTE] = self.dkim_body
        content = self.runtime.policy.content
        if content.enabled:
            keep = content.rspamd.max_bytes if content.rspamd.url else 0
            self.content = ContentStream(self.message.headers, content.caps, keep)

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        if not self.body_open:
            self._open_body()
        self.digest.update(chunk)
        if self.dkim_body is not None:
            self.dkim_body.write(chunk)
        if self.content is not None:
            self.content.feed(chunk)
        return int(Milter.CONTINUE)

    @Milter.symlist("i")
    @guarded
    def eom(self) -> int:
        msg = self.message
        if not self.body_open:  # an empty body, or none sent (no check reads it)
            self._open_body()
        msg.queue_id = self.getsymval("i") or msg.queue_id
        msg.body_size, msg.body_digest = self.digest.size, self.digest.hexdigest()
        if self.content is not None:
            msg.content, self.content = self.content.finish(), None
        stamp = trace.stamp(self.runtime.policy.trace, msg.queue_id, time.time())
        if stamp is not None:
            msg.notes[trace.NOTE] = stamp
        try:
            status = self._decide(Stage.EOM)
            if stamp is not None and status == Milter.ACCEPT:
                self._stamp_trace(stamp)
            return status
        finally:
            self._end_transaction()

    def abort(self) -> int:
        self._reset()
        return int(Milter.CONTINUE)

    def close(self) -> int:
        self._end()  # nothing follows on this connection: no fresh state to build
        if self._connected:
            metrics.OPEN_CONNECTIONS.dec()
        return int(Milter.CONTINUE)

    # -- deciding -----------------------------------------------------------
    def _decide(self, stage: Stage, rcpt: str = "") -> int:
        rt = self.gen
        policy = rt.policy
        started = time.perf_counter()
        dns_before = self.dns.spent if self.dns is not None else 0.0
        verdict = engine.decide(
            self.message,
            self.sender,
            policy,
            rt.store,
            self.dns,
            stage=stage,
            rcpt=rcpt,
            ref=self.ref,
        )
        if stage == Stage.EOM and self.carried:
            verdict = engine.combine([*self.carried, *verdict.findings], policy, self.ref)
        elif verdict.action in (Action.ACCEPT, Action.QUARANTINE):
            self.carried.extend(verdict.findings)
        elif shadow.active(policy) and stage == Stage.MAIL and shadow.refuses(verdict):
            # The transaction goes on: its final record says what enforce would have done.
            self.carried.extend(verdict.findings)
        if shadow.active(policy):
            verdict = shadow.shadowed(verdict)
        latency = (time.perf_counter() - started) * 1000
        name = stage.name.lower()
        metrics.decision_seconds(name).observe(latency / 1000)
        dns_ms = ((self.dns.spent if self.dns is not None else 0.0) - dns_before) * 1000
        self.stages_ms[name] = self.stages_ms.get(name, 0.0) + latency - dns_ms
        if stage == Stage.EOM or shadow.effective(verdict) not in (
            Action.ACCEPT,
            Action.QUARANTINE,
        ):
            self._log(verdict, stage, latency)
        if stage == Stage.EOM:
            verdict = self._settle(verdict, latency)
        return apply_verdict(self, verdict, stage)

    def _settle(self, verdict: Verdict, latency_ms: float) -> Verdict:
        """The end-of-message round trip read the message's campaign: it may move the verdict."""
        store = self.gen.store
        if not isinstance(store, RedisStore):
            return verdict
        late = campaigns.late_findings(store, self.message.notes, self.gen.policy)
        if not late:
            return verdict
        moved = engine.combine([*verdict.findings, *late], self.gen.policy, self.ref)
        if shadow.active(self.gen.policy):
            moved = shadow.shadowed(moved)
        if shadow.effective(moved) == shadow.effective(verdict):
            return verdict
        self._log(moved, Stage.EOM, latency_ms)  # the moved verdict's event, index entry
        return moved

    def _log(self, verdict: Verdict, stage: Stage, latency_ms: float) -> None:
        policy = self.gen.policy
        metrics.decisions(stage.name.lower(), verdict.action.label).inc()
        for finding in verdict.findings:
            metrics.findings(finding.check, finding.name).inc()
        fields = decision_fields(
            self.message, self.sender, verdict, stage, latency_ms, policy.log.addresses
        )
        stamp = self.message.notes.get(trace.NOTE)
        if stage == Stage.EOM and stamp is not None and verdict.action <= Action.QUARANTINE:
            fields["trace"] = stamp.token
        if stage == Stage.EOM:
            fields["stages_ms"] = {k: round(v, 3) for k, v in self.stages_ms.items()}
        log_decision(fields)
        if stage == Stage.RCPT:
            self.deferred.append(fields)
            return
        earlier, self.deferred = self.deferred, []
        store = self.gen.store
        try:
            store.finish(Outcome(self.message, self.sender, verdict, fields), earlier)
            # A spent spam budget blocks the sender; shadow mode never blocks.
            if isinstance(store, RedisStore) and not shadow.active(policy):
                budget.enforce(store, self.message.notes, policy)
        except Exception as exc:  # a record, not a gate: the verdict stands
            log.warning("could not record decision %s: %s", verdict.ref, exc)

    def _stamp_trace(self, stamp: trace.Stamp) -> None:
        """Our token as the only header of its name, added last (smfi_addheader)."""
        name = self.runtime.policy.trace.header
        try:
            # Highest index first, so each removal leaves the lower indexes in place.
            for index in range(self.trace_headers_seen, 0, -1):
                self.chgheader(name, index, "")
            self.addheader(name, stamp.token)
        except Exception as exc:  # the verdict stands: mail is never lost over a stamp
            metrics.INTERNAL_ERRORS.inc()
            log.warning("could not stamp trace header (queue id %s): %s", stamp.info.queue_id, exc)

    def _flush_deferred(self) -> None:
        """A transaction ended with no final decision (every recipient refused, RSET,
        QUIT, a dropped connection): record its recipient decisions and let the store
        give back what the transaction held (a rate-limit reservation)."""
        events, self.deferred = getattr(self, "deferred", []), []
        message = getattr(self, "message", None)
        if message is None:
            return
        try:
            self.runtime.store.abandon(message, events)
        except Exception as exc:  # a record, not a gate; a reservation lapses by its lease
            log.warning(
                "could not end transaction (%d recipient decision(s)): %s", len(events), exc
            )


def _params(params: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in params:
        key, _, value = item.partition("=")
        out[key.upper()] = value
    return out
