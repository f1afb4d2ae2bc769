"""What the abuse team can do, for the CLI and the web page alike.

Every action is audited here, so no interface can act without leaving a trail.
An action on a message held by another relay is queued in Redis for that relay's
agent (`relaywarden agent`, or the thread in `relaywarden run`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from relaywarden import audit, blocking
from relaywarden.desk import index, refs
from relaywarden.desk import scan as queue_scan
from relaywarden.desk.index import Entry
from relaywarden.desk.postfix import PostfixError, PostfixTools, check_queue_id
from relaywarden.desk.preview import Preview, PreviewTimeout, PreviewWorker
from relaywarden.desk.scan import ScanReport
from relaywarden.desk.status import SenderStatus, sender_status
from relaywarden.errors import StoreError
from relaywarden.keys import digest
from relaywarden.policy.desk import QuarantineSection
from relaywarden.policy.schema import BlockEntry, Policy
from relaywarden.store import BlockRecord, RedisStore, connect, redis_errors
from relaywarden.subjects import Subject, SubjectError, parse_subject

log = logging.getLogger("relaywarden.desk")
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

QueueAction = Literal["release", "delete"]
Via = Literal["cli", "web", "api", "agent"]


MAX_BULK = 10_000  # messages one bulk action may cover


def _search(text: str) -> Callable[[Entry], bool]:
    needle = text.lower()

    def match(e: Entry) -> bool:
        return (
            needle in e.sender.lower()
            or needle in e.subject.lower()
            or needle in e.from_header.lower()
            or needle == e.ref.lower()
            or needle == e.queue_id.lower()
        )

    return match


class DeskError(Exception):
    """Something the operator asked for cannot be done; the text says why."""


@dataclass(frozen=True)
class ActionResult:
    queue_id: str
    relay: str
    action: str
    result: Literal["done", "queued", "failed"]
    detail: str = ""


@dataclass(frozen=True)
class MessageView:
    entry: Entry
    preview: Preview | None
    preview_note: str
    status: SenderStatus


def entry_subjects(entry: Entry) -> list[Subject]:
    """Who a held message is about, VPS first (it drives the rate chart)."""
    out = []
    for text in (
        f"vps:{entry.vps}",
        f"customer:{entry.customer}" if entry.customer else "",
        f"user:{entry.sasl_user}" if entry.sasl_user else "",
        f"sender:{entry.sender}" if entry.sender else "",
    ):
        if text:
            try:
                out.append(parse_subject(text))
            except SubjectError:
                continue  # e.g. a VPS key "unknown": nothing to look up
    return out


class Desk:
    def __init__(
        self,
        store: RedisStore,
        cfg: QuarantineSection,
        postfix: PostfixTools,
        policy: Policy | None = None,
        policy_path: Path | None = None,
    ):
        self.store = store
        self.cfg = cfg
        self.postfix = postfix
        # With the policy, a sender's status includes its rate-limit windows.
        self.policy = policy
        self.policy_path = policy_path
        self._previews: PreviewWorker | None = None
        self.queue_error = ""  # why the hold queue could not be read last time
        self._next_scan = 0.0

    @classmethod
    def from_policy(
        cls, policy: Policy, redis_url: str | None = None, policy_path: Path | None = None
    ) -> Desk:
        # The desk is interactive: a slow Redis should answer within seconds.
        client = connect(redis_url or policy.redis.client_url, max(policy.redis.timeout, 5.0))
        store = RedisStore(client, policy.redis.key_prefix, policy.redis.events_maxlen)
        q = policy.quarantine
        tools = PostfixTools(q.postfix_config_dir, q.postfix_bin_dir, q.command_timeout)
        return cls(store, q, tools, policy, policy_path)

    @property
    def relay(self) -> str:
        return self.cfg.relay

    @property
    def previews(self) -> PreviewWorker:
        """Previews are parsed in a worker process with a time limit (started on first use)."""
        if self._previews is None or self._previews.timeout != self.cfg.preview_timeout:
            self._previews = PreviewWorker(self.cfg.preview_timeout)
        return self._previews

    def close(self) -> None:
        if self._previews is not None:
            self._previews.close()

    # -- reading --------------------------------------------------------------
    def entries(
        self,
        *,
        customer: str | None = None,
        vps: str | None = None,
        since: float = 0.0,
        finding: str | None = None,
        search: str | None = None,
    ) -> list[Entry]:
        return self.select(
            customer=customer, vps=vps, since=since, finding=finding, search=search
        ).entries

    def select(
        self,
        *,
        customer: str | None = None,
        vps: str | None = None,
        since: float = 0.0,
        finding: str | None = None,
        search: str | None = None,
        before: float | None = None,
        limit: int = index.MAX_LISTED,
    ) -> index.Selection:
        """Held messages matching every filter, newest first, read from Redis's
        per-VPS/customer/finding index (no cap before the filters)."""
        match = _search(search) if search else None
        found = index.select(
            self.store,
            vps=vps,
            customer=customer,
            finding=finding,
            since=since,
            before=before,
            match=match,
            limit=limit,
        )
        return replace(found, entries=self._with_hold_state(found.entries))

    def _with_hold_state(self, entries: list[Entry]) -> list[Entry]:
        if not any(e.relay == self.relay for e in entries):
            return entries
        try:
            held = self.postfix.hold_ids()
        except PostfixError as exc:
            # in_hold stays None: "unknown", never "left the hold queue".
            log.warning("cannot read the hold queue: %s", exc)
            self.queue_error = str(exc)
            return entries
        self.queue_error = ""
        return [
            replace(e, in_hold=e.queue_id in held) if e.relay == self.relay else e for e in entries
        ]

    def find(self, queue_id: str, relay: str | None = None) -> Entry:
        qid = check_queue_id(queue_id)
        entries = [e for e in index.get(self.store, qid) if relay is None or e.relay == relay]
        if not entries:
            raise DeskError(f"{qid}: not in the quarantine index")
        if len(entries) > 1:
            relays = ", ".join(e.relay for e in entries)
            raise DeskError(f"{qid} is held on several relays ({relays}): name one with --relay")
        return self._with_hold_state(entries)[0]

    def show(
        self, queue_id: str, relay: str | None = None, now: float | None = None
    ) -> MessageView:
        entry = self.find(queue_id, relay)
        preview, note = None, ""
        if entry.relay != self.relay:
            note = f"held on relay {entry.relay}: its content can be read there"
        elif entry.in_hold is None:
            note = f"could not read the hold queue ({self.queue_error or 'postqueue failed'})"
        elif not entry.in_hold:
            note = "the message is no longer in the hold queue"
        else:
            try:
                raw = self.postfix.content(entry.queue_id)
                preview = self.previews.build(
                    raw, self.cfg.preview_chars, self.cfg.preview_max_bytes
                )
            except PostfixError as exc:
                log.warning("postcat %s: %s", entry.queue_id, exc)
                note = "the message could not be read from the hold queue"
            except PreviewTimeout as exc:
                log.warning("preview of %s stopped: %s", entry.queue_id, exc)
                note = f"no preview: {exc} and was stopped (the message is still held)"
            except Exception:  # the worker's error: the page still shows the entry
                log.exception("preview of %s failed", entry.queue_id)
                note = "the message could not be previewed"
        return MessageView(entry, preview, note, self.sender_status(entry, now))

    def sender_status(self, entry: Entry, now: float | None = None) -> SenderStatus:
        return self._with_limits(sender_status(self.store, entry_subjects(entry), now))

    def subject_status(self, subject: Subject, now: float | None = None) -> SenderStatus:
        return self._with_limits(sender_status(self.store, [subject], now))

    def _with_limits(self, status: SenderStatus) -> SenderStatus:
        """Add each subject's rate-limit windows, effective limits and why."""
        if self.policy is None:
            return status
        from relaywarden.inventory import (
            IndexedInventory,
            base_customers,
            merged,
            read_overrides,
        )
        from relaywarden.limits.status import STATUS_KINDS, subject_status

        policy = self.policy
        try:
            base = base_customers(policy, self.policy_path)
            inventory = IndexedInventory(merged(base, read_overrides(self.store)))
            limits = [
                subject_status(self.store, policy, parse_subject(text), inventory)
                for text in status.subjects
                if text.split(":", 1)[0] in STATUS_KINDS
            ]
        except (StoreError, SubjectError, OSError, ValueError) as exc:
            log.warning("rate-limit status unavailable: %s", exc)
            return status
        return replace(status, limits=limits)

    def held_for(self, *, vps: str | None = None, customer: str | None = None) -> list[Entry]:
        """Everything still held for one VPS or customer: the set a bulk action covers."""
        if not vps and not customer:
            raise DeskError("a bulk action needs a VPS or a customer")
        found = self.select(vps=vps, customer=customer, limit=MAX_BULK)
        if found.more:
            raise DeskError(f"more than {MAX_BULK} messages match: narrow the selection")
        return [e for e in found.entries if e.state == "held" and e.in_hold is not False]

    def selected(self, ids: list[tuple[str, str]]) -> list[Entry]:
        """Exactly these (relay, queue id) entries that are still held; the caller
        compares the count with what the operator saw and confirmed."""
        for _, qid in ids:
            check_queue_id(qid)
        found = [e for e in index.get_many(self.store, ids) if e is not None]
        return [
            e for e in self._with_hold_state(found) if e.state == "held" and e.in_hold is not False
        ]

    def reference(self, ref: str) -> tuple[refs.RefLookup, list[Entry]]:
        """Every decision with this reference (from the decision stream), and the
        held message it names, if any (from the quarantine index)."""
        found = refs.find_decisions(self.store, ref)
        held: list[Entry] = []
        for qid in dict.fromkeys(str(d.get("queue_id") or "") for d in found.decisions):
            if qid:
                held += [e for e in index.get(self.store, qid) if e.ref == found.ref]
        return found, self._with_hold_state(held)

    def audit(
        self,
        where: audit.AuditFilter | None = None,
        *,
        before: str | None = None,
        count: int = audit.PAGE,
    ) -> audit.AuditPage:
        """One page of the audit trail, filtered over the whole stream."""
        if before is not None and not _STREAM_ID.fullmatch(before):
            raise DeskError("the page cursor is not a stream id")
        return audit.page(self.store, where, before=before, count=count)

    def blocks(self) -> list[BlockRecord]:
        return self.store.list_blocks()

    def static_blocks(self) -> list[BlockEntry]:
        """The policy file's [[blocks]] (enforced as well, but not lifted from here)."""
        return list(self.policy.blocks) if self.policy else []

    # -- acting ---------------------------------------------------------------
    def release(
        self, entry: Entry, *, actor: str, reason: str = "", via: Via = "cli"
    ) -> ActionResult:
        return self._act("release", entry, actor=actor, reason=reason, via=via)

    def delete(
        self, entry: Entry, *, actor: str, reason: str = "", via: Via = "cli"
    ) -> ActionResult:
        return self._act("delete", entry, actor=actor, reason=reason, via=via)

    def block(
        self,
        subject: Subject,
        *,
        actor: str,
        reason: str,
        duration: float | None,
        action: str = "reject",
        via: Via = "cli",
    ) -> BlockRecord:
        return blocking.block(
            self.store,
            self.canonical(subject),
            actor=actor,
            reason=reason,
            duration=duration,
            action=action,
            via=via,
        )

    def unblock(self, subject: Subject, *, actor: str, reason: str = "", via: Via = "cli") -> bool:
        target = self.canonical(subject)
        return blocking.unblock(self.store, target, actor=actor, reason=reason, via=via)

    def trace(self, token: str) -> tuple[Any, dict[str, Any] | None]:
        """A trace header's token back to its transaction: (TraceInfo, decision record)."""
        from relaywarden import trace
        from relaywarden.trace.record import lookup

        if self.policy is None:
            raise DeskError("the desk runs without a policy: it has no trace keys")
        info = trace.verify(token.strip(), self.policy.trace)
        if info is None:
            raise DeskError("not a trace token made with this policy's [[trace.keys]]")
        return info, lookup(self.store, info)

    def canonical(self, subject: Subject) -> Subject:
        """As the milter keys it (a `vps:` IPv6 address is its /prefix), whichever
        page or API call wrote it; a form that cannot be is a SubjectError."""
        prefix = self.policy.identity.ipv6_prefix if self.policy is not None else 64
        return parse_subject(str(subject), prefix)

    def _act(
        self, action: QueueAction, entry: Entry, *, actor: str, reason: str, via: Via
    ) -> ActionResult:
        check_queue_id(entry.queue_id)
        if entry.relay != self.relay:
            self._enqueue(action, entry, actor=actor, reason=reason, via=via)
            index.set_state(self.store, entry, f"{action} queued", f"for relay {entry.relay}")
            result = ActionResult(entry.queue_id, entry.relay, action, "queued")
        else:
            result = self._apply(action, entry)
        self._audit(result, entry, actor=actor, reason=reason, via=via)
        return result

    def _apply(self, action: QueueAction, entry: Entry) -> ActionResult:
        try:
            if action == "release":
                self.postfix.release(entry.queue_id)
            else:
                self.postfix.delete(entry.queue_id)
        except PostfixError as exc:
            log.warning("%s %s failed: %s", action, entry.queue_id, exc)
            # Shown as failed (never left "queued"); the message, if still held,
            # can be acted on again.
            state = "held" if entry.state == "held" else "failed"
            index.set_state(self.store, entry, state, f"{action} failed: not in the hold queue")
            return ActionResult(
                entry.queue_id, entry.relay, action, "failed", "not in the hold queue"
            )
        index.set_state(self.store, entry, "released" if action == "release" else "deleted")
        return ActionResult(entry.queue_id, entry.relay, action, "done")

    def _audit(
        self, result: ActionResult, entry: Entry, *, actor: str, reason: str, via: str
    ) -> None:
        audit.record(
            self.store,
            audit.AuditEntry(
                actor=actor,
                action=result.action,
                target=entry.queue_id,
                reason=reason[:200],
                details={
                    "relay": entry.relay,
                    "result": result.result,
                    "ref": entry.ref,
                    "sender": entry.sender,
                    "vps": entry.vps,
                },
                via=via,
            ),
        )

    # -- other relays' work ------------------------------------------------------
    def jobs_key(self, relay: str) -> str:
        return f"{self.store.keys.prefix}:desk:jobs:{{{digest(relay)}}}"

    def working_key(self, relay: str) -> str:
        # Same hash tag as jobs_key: BLMOVE between them is one slot in a cluster.
        return f"{self.store.keys.prefix}:desk:working:{{{digest(relay)}}}"

    def _enqueue(
        self, action: QueueAction, entry: Entry, *, actor: str, reason: str, via: str
    ) -> None:
        job = {
            "action": action,
            "queue_id": entry.queue_id,
            "actor": actor,
            "reason": reason,
            "via": via,
        }
        with redis_errors("queueing a desk action"):
            self.store.client.lpush(self.jobs_key(entry.relay), json.dumps(job))

    def recover_jobs(self) -> int:
        """Jobs an agent took but did not finish (it died): back in the queue."""
        moved = 0
        with redis_errors("recovering desk actions"):
            while moved < 10_000 and self.store.client.lmove(
                self.working_key(self.relay), self.jobs_key(self.relay), "RIGHT", "RIGHT"
            ):
                moved += 1
        return moved

    def run_job(self, wait: float = 1.0) -> ActionResult | None:
        """Apply one action queued for this relay, waiting up to `wait` seconds for one.

        At least once: the job moves to a working list (BLMOVE) and leaves it only
        once applied and audited; an agent that dies leaves it there for
        `recover_jobs`. Idempotent by queue id: a message already released or
        deleted is not acted on again.
        """
        with redis_errors("reading desk actions"):
            item = self.store.client.blmove(
                self.jobs_key(self.relay),
                self.working_key(self.relay),
                wait,  # type: ignore[arg-type]  # seconds; Redis takes a float
                "RIGHT",
                "LEFT",
            )
        if item is None:
            return None
        try:
            return self._run(json.loads(item))
        finally:
            with redis_errors("finishing a desk action"):
                self.store.client.lrem(self.working_key(self.relay), 1, item)  # type: ignore[arg-type]

    def _run(self, job: dict[str, Any]) -> ActionResult | None:
        qid = str(job.get("queue_id"))
        entries = [e for e in index.get(self.store, qid) if e.relay == self.relay]
        action = job.get("action")
        if not entries or action not in ("release", "delete"):
            log.warning("dropping a desk action for an unknown message: %s", qid[:40])
            return None
        entry = entries[0]
        done = "released" if action == "release" else "deleted"
        if entry.state == done:
            log.info("desk action %s %s already applied: skipped", action, qid)
            return ActionResult(qid, self.relay, action, "done", "already applied")
        result = self._apply(action, entry)
        self._audit(
            result,
            entry,
            actor=str(job.get("actor", "?")),
            reason=f"{job.get('reason', '')}".strip(),
            via="agent",
        )
        return result

    def serve_jobs(self, stop: threading.Event, wait: float = 1.0) -> None:
        """The relay agent: apply queued actions until `stop` is set."""
        self.recover_jobs()
        while not stop.is_set():
            self.serve_one(stop, wait)

    def scan(self) -> ScanReport:
        """Index held messages the index does not know; mark vanished ones gone."""
        report = queue_scan.scan(self.store, self.postfix, self.cfg)
        log.info(
            "quarantine scan: %d held, %d filed anew, %d gone",
            report.held,
            len(report.added),
            len(report.gone),
        )
        return report

    def _scan_when_due(self, now: float) -> None:
        if not self.cfg.scan_interval or now < self._next_scan:
            return
        self._next_scan = now + self.cfg.scan_interval
        try:
            self.scan()
        except queue_scan.QueueUnreadable as exc:
            log.warning("quarantine scan: %s", exc)

    def serve_one(self, stop: threading.Event, wait: float = 1.0) -> None:
        try:
            self._scan_when_due(time.time())
            self.run_job(wait)
        except Exception:  # a bad job or a Redis outage must not end the agent
            log.exception("desk agent")
            stop.wait(min(wait, 5.0))
