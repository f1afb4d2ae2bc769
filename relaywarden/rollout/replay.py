"""Replay recorded traffic through `decide` with the current policy, without
Postfix and without touching the counters, and say what would change.

Sources:
* decision records (the Redis decision stream, or a JSON-lines file of the
  milter's log): a record holds the envelope (client, login, sender, recipient
  count, size) but no headers or body. Its envelope is decided again (blocks,
  address syntax, the sender's domain with `dns`); its end-of-message findings
  are taken as recorded and re-scored with the current thresholds.
* a directory of .eml files, each with its envelope in a sidecar NAME.json
  (`mail_from`, `rcpts`, `client_address`, `sasl_user`, `helo`, and optionally
  the `action` it got): decided whole, MAIL FROM then end of message.

Rate limits, campaigns, outcomes and other counters are not replayed: they
depend on live counters, and a replay must not change them. Blocks set at run
time (in Redis) are not applied either; the policy's static [[blocks]] are.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaywarden import engine
from relaywarden.checks import Check, Stage, addresses, blocks, headers, sender
from relaywarden.content import checks as content
from relaywarden.identity import Inventory, Sender, identify
from relaywarden.message import Message, message_from_bytes, normalise_ip
from relaywarden.policy import Policy
from relaywarden.store import BlockRecord, Outcome
from relaywarden.subjects import Subject
from relaywarden.verdict import Action, Finding, Verdict

# What replay decides again: checks that need no counters.
ENVELOPE_CHECKS: tuple[Check, ...] = (blocks.CHECK, addresses.ENVELOPE, sender.ENVELOPE)
MESSAGE_CHECKS: tuple[Check, ...] = (
    *ENVELOPE_CHECKS,
    addresses.FROM_HEADER,
    headers.CHECK,
    sender.MESSAGE,
    content.CHECK,
)
# A decision record's findings from these are decided again; the others are kept.
ENVELOPE_NAMES = {c.name for c in ENVELOPE_CHECKS}
MAX_RECORDS = 10_000
MAX_EML_BYTES = 10 * 1024 * 1024
MAX_RECIPIENTS = 1000


class NoStore:
    """The Store a replay decides against: no runtime blocks, records nothing."""

    def blocks_for(self, subjects: list[Subject]) -> list[BlockRecord]:
        return []

    def finish(self, outcome: Outcome, earlier: Sequence[dict[str, Any]] = ()) -> None:
        return None


@dataclass
class Case:
    """One recorded message: how to rebuild it and what it got then."""

    label: str
    message: Message
    recorded: str | None  # the action then, if known
    envelope_only: bool
    kept: list[Finding] = field(default_factory=list)  # recorded findings not replayed


@dataclass
class Change:
    label: str
    before: str | None
    after: str
    findings: list[str]


@dataclass
class Report:
    replayed: int = 0
    skipped: list[str] = field(default_factory=list)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    changed_findings: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)
    truncated: bool = False

    @property
    def changed(self) -> int:
        """Messages whose recorded action differs from today's (unknown ones aside)."""
        return sum(n for (a, b), n in self.transitions.items() if a not in (b, "unknown"))

    def as_dict(self, changes_shown: int = 100) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "changed": self.changed,
            "transitions": [
                {"from": a, "to": b, "count": n} for (a, b), n in self.transitions.most_common()
            ],
            "findings": dict(self.findings.most_common()),
            "findings_in_changed": dict(self.changed_findings.most_common()),
            "changes": [c.__dict__ for c in self.changes[:changes_shown]],
            "skipped": self.skipped[:changes_shown],
            "truncated": self.truncated,
        }


# -- sources ---------------------------------------------------------------


def _finding(data: Any) -> Finding | None:
    if not isinstance(data, dict) or not data.get("check") or not data.get("name"):
        return None
    action = None
    if isinstance(data.get("action"), str):
        try:
            action = Action.parse(data["action"])
        except KeyError:
            action = None
    score = data.get("score", 0.0)
    evidence = data.get("evidence")
    return Finding(
        check=str(data["check"]),
        name=str(data["name"]),
        score=float(score) if isinstance(score, int | float) else 0.0,
        evidence=evidence if isinstance(evidence, dict) else {},
        action=action,
    )


def case_from_event(event: dict[str, Any], label: str) -> Case | None:
    """A decision record as a message with its envelope; None if it is not one."""
    if event.get("event", "decision") != "decision" or event.get("stage") not in ("mail", "eom"):
        return None
    address = event.get("sender")
    if not isinstance(address, str):
        domain = event.get("sender_domain")
        address = f"replay@{domain}" if isinstance(domain, str) and domain else ""
    msg = Message(
        client_address=normalise_ip(str(event.get("client_address") or "")),
        sasl_user=str(event.get("sasl_user") or ""),
        mail_from=address,
        queue_id=str(event.get("queue_id") or ""),
    )
    count = event.get("recipient_count")
    for n in range(min(count if isinstance(count, int) else 1, MAX_RECIPIENTS) or 1):
        msg.add_rcpt(f"rcpt{n}@replay.invalid")
    size = event.get("body_size")
    msg.body_size = size if isinstance(size, int) else 0
    recorded = event.get("would_action") or event.get("action")
    kept = [
        f
        for f in (_finding(d) for d in event.get("findings") or [])
        if f is not None and f.check not in ENVELOPE_NAMES and not f.check.startswith("limits")
    ]
    return Case(
        label=str(event.get("ref") or label),
        message=msg,
        recorded=str(recorded) if recorded else None,
        envelope_only=True,
        kept=kept,
    )


def events_from_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def cases_from_jsonl(path: Path, limit: int) -> Iterator[Case | str]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, event in enumerate(events_from_lines(fh)):
            if n >= limit:
                return
            case = case_from_event(event, f"{path.name}:{n + 1}")
            if case is not None:
                yield case


def cases_from_events(events: Iterable[dict[str, Any]]) -> Iterator[Case | str]:
    for n, event in enumerate(events):
        case = case_from_event(event, f"event {n + 1}")
        if case is not None:
            yield case


def cases_from_dir(directory: Path, limit: int) -> Iterator[Case | str]:
    """Each .eml with its sidecar .json envelope; a string says why one was skipped."""
    for n, path in enumerate(sorted(directory.glob("*.eml"))):
        if n >= limit:
            return
        if path.stat().st_size > MAX_EML_BYTES:
            yield f"{path.name}: larger than {MAX_EML_BYTES} bytes, skipped"
            continue
        envelope: dict[str, Any] = {}
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            try:
                loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            except ValueError as exc:
                yield f"{sidecar.name}: not JSON ({exc}), skipped"
                continue
            envelope = loaded if isinstance(loaded, dict) else {}
        rcpts = envelope.get("rcpts")
        msg = message_from_bytes(
            path.read_bytes(),
            mail_from=envelope.get("mail_from"),
            rcpts=[str(r) for r in rcpts][:MAX_RECIPIENTS] if isinstance(rcpts, list) else None,
            client_address=str(envelope.get("client_address") or "203.0.113.7"),
            sasl_user=str(envelope.get("sasl_user") or ""),
            helo=str(envelope.get("helo") or ""),
            queue_id=path.stem[:40],
        )
        recorded = envelope.get("action")
        yield Case(path.name, msg, str(recorded) if recorded else None, envelope_only=False)


# -- deciding ---------------------------------------------------------------


def decide_case(
    case: Case, policy: Policy, inventory: Inventory, resolver: Any = None, now: float | None = None
) -> Verdict:
    """The verdict the current policy gives: MAIL FROM, then (if it goes on) the rest."""
    who: Sender = identify(case.message, inventory, policy.identity.ipv6_prefix)
    store = NoStore()
    session = resolver.session() if resolver is not None else None
    mail = engine.decide(
        case.message, who, policy, store, session,
        stage=Stage.MAIL, checks=ENVELOPE_CHECKS, ref="RW-REPLAY", now=now,
    )  # fmt: skip
    if mail.action > Action.QUARANTINE:
        return mail
    if case.envelope_only:
        return engine.combine([*mail.findings, *case.kept], policy, "RW-REPLAY")
    eom = engine.decide(
        case.message, who, policy, store, session,
        stage=Stage.EOM, checks=MESSAGE_CHECKS, ref="RW-REPLAY", now=now,
    )  # fmt: skip
    return engine.combine([*mail.findings, *eom.findings], policy, "RW-REPLAY")


def replay(
    cases: Iterable[Case | str],
    policy: Policy,
    inventory: Inventory,
    resolver: Any = None,
    limit: int = MAX_RECORDS,
    now: float | None = None,
) -> Report:
    report = Report()
    for item in cases:
        if report.replayed + len(report.skipped) >= limit:
            report.truncated = True
            break
        if isinstance(item, str):
            report.skipped.append(item)
            continue
        try:
            verdict = decide_case(item, policy, inventory, resolver, now)
        except Exception as exc:  # one bad record must not end the replay
            report.skipped.append(f"{item.label}: {type(exc).__name__}: {exc}")
            continue
        report.replayed += 1
        after = verdict.action.label
        before = item.recorded or "unknown"
        report.transitions[(before, after)] += 1
        names = [f"{f.check}/{f.name}" for f in verdict.findings]
        report.findings.update(names)
        if item.recorded and before != after:
            report.changed_findings.update(names)
            report.changes.append(Change(item.label, item.recorded, after, names))
    return report


def render(report: Report, changes_shown: int = 20) -> str:
    """The text summary: transitions, findings, the first changed messages."""
    lines = [f"replayed {report.replayed} message(s): {report.changed} would change"]
    if report.truncated:
        lines.append("(stopped at the record limit: --limit)")
    lines.append("")
    lines.append("then -> now")
    for (before, after), n in sorted(report.transitions.items(), key=lambda kv: -kv[1]):
        mark = "   (changed)" if before not in (after, "unknown") else ""
        lines.append(f"  {before:>10} -> {after:<10} {n:>6}{mark}")
    if report.findings:
        lines.append("")
        lines.append("findings now (in changed messages / in all)")
        for name, n in report.findings.most_common():
            lines.append(f"  {name:<40} {report.changed_findings.get(name, 0):>6} / {n}")
    if report.changes:
        lines.append("")
        lines.append(f"changed (first {min(changes_shown, len(report.changes))})")
        for c in report.changes[:changes_shown]:
            found = ", ".join(c.findings)
            lines.append(f"  {c.label}: {c.before or 'unknown'} -> {c.after}  {found}")
    for reason in report.skipped[:changes_shown]:
        lines.append(f"skipped {reason}")
    return "\n".join(lines)
