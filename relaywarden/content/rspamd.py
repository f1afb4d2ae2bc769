"""Optional: ask a real rspamd over HTTP (`/checkv2`) for its verdict at end of message.

Bounded: the body sent is the first `[content.rspamd] max_bytes` (kept by the
content stream only when rspamd is configured), and the request's timeout is
the smaller of `timeout` and what is left of the message's time budget (the
DNS session's; the time spent is charged to it). rspamd's score times `weight`
becomes a finding when it reaches `min_score`, with its strongest symbols as
evidence. rspamd down or slow: `on_error`.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from relaywarden import metrics
from relaywarden.checks import Check, Context, Stage
from relaywarden.errors import DependencyError
from relaywarden.message import Message
from relaywarden.policy.content import RspamdSection
from relaywarden.verdict import Finding

log = logging.getLogger("relaywarden.content")
NAME = "rspamd"
MAX_REPLY = 1024 * 1024


class RspamdError(DependencyError):
    """rspamd could not be asked, or did not answer in time, or answered nonsense."""

    service = "rspamd"


def _request(msg: Message, user: str, raw: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    head = b"".join(
        h.name.encode("latin-1", "replace") + b": " + h.raw + b"\r\n" for h in msg.headers
    )
    meta = [("From", msg.mail_from or "<>"), ("Helo", msg.helo or "unknown")]
    if msg.client_address is not None:
        meta.append(("IP", str(msg.client_address)))
    if msg.queue_id:
        meta.append(("Queue-Id", msg.queue_id))
    # Outbound: the relay knows who sends, so rspamd is told the sender is
    # authenticated and skips its own SPF/DMARC/RBL/HELO checks of the client
    # (RelayWarden's sender checks do those); what it scores is the content.
    meta.append(("User", user))
    meta += [("Rcpt", r) for r in msg.rcpts[:100]]
    # Header values go on our own HTTP request: nothing with a line break.
    meta = [(k, v.replace("\r", " ").replace("\n", " ")[:320]) for k, v in meta]
    return head + b"\r\n" + raw, meta


def ask(cfg: RspamdSection, msg: Message, user: str, raw: bytes, timeout: float) -> dict[str, Any]:
    parts = urlsplit(cfg.url)
    body, meta = _request(msg, user, raw)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 11333, timeout=timeout)
    try:
        conn.putrequest("POST", "/checkv2")
        for name, value in [*meta, ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        reply = conn.getresponse()
        data = reply.read(MAX_REPLY + 1)
        if reply.status != 200 or len(data) > MAX_REPLY:
            raise RspamdError(f"rspamd answered HTTP {reply.status}")
        result = json.loads(data)
        if not isinstance(result, dict) or not isinstance(result.get("score"), int | float):
            raise RspamdError("rspamd's answer has no score")
        return result
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RspamdError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


def _finding(cfg: RspamdSection, result: dict[str, Any]) -> list[Finding]:
    score = float(result["score"])
    if score < cfg.min_score:
        return []
    symbols = result.get("symbols")
    table: dict[str, Any] = symbols if isinstance(symbols, dict) else {}
    scored = [(str(k), float(v.get("score", 0))) for k, v in table.items() if isinstance(v, dict)]
    strongest = sorted(scored, key=lambda item: -abs(item[1]))[:8]
    return [
        Finding(
            check=NAME,
            name="rspamd-spam",
            score=round(score * cfg.weight, 2),
            evidence={
                "score": score,
                "action": str(result.get("action", ""))[:40],
                "symbols": [name for name, _ in strongest],
            },
            reason="content scored as spam",
        )
    ]


def run(ctx: Context) -> list[Finding]:
    cfg = ctx.policy.content.rspamd
    view = ctx.message.content
    if not cfg.url or view is None:
        return []
    session = ctx.resolver
    left = getattr(session, "remaining", cfg.timeout)
    timeout = min(cfg.timeout, left)
    started = time.monotonic()
    try:
        if timeout <= 0:
            raise RspamdError("the message's time budget is spent")
        sender = ctx.sender
        user = ctx.message.sasl_user or sender.customer or f"vps:{sender.vps}"
        return _finding(cfg, ask(cfg, ctx.message, user, view.raw, timeout))
    except RspamdError as exc:
        if cfg.on_error == "tempfail":
            raise
        metrics.DEPENDENCY_ERRORS.labels(service="rspamd", check=NAME).inc()
        log.warning("rspamd not asked for this message (failing open): %s", exc)
        return []
    finally:
        if session is not None and hasattr(session, "spent"):
            session.spent += time.monotonic() - started


# The body goes to rspamd (its first max_bytes, kept by the content view).
CHECK = Check(
    NAME, Stage.EOM, run, needs_body=lambda p: p.content.enabled and bool(p.content.rspamd.url)
)
