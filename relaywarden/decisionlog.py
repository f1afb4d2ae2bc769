"""One JSON line per decision: what the abuse team greps and the SIEM ingests."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from relaywarden import fastjson
from relaywarden.checks import Stage
from relaywarden.identity import Sender
from relaywarden.message import Message
from relaywarden.verdict import Verdict

log = logging.getLogger("relaywarden.decision")


class JsonFormatter(logging.Formatter):
    """Every log record as one JSON object; decision records carry their fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, with [milter] workers > 1
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return fastjson.dumps(out)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _shadow_fields(verdict: Verdict) -> dict[str, Any]:
    """In shadow mode: what enforce mode would have done."""
    if verdict.would is None:
        return {}
    return {
        "mode": "shadow",
        "would_action": verdict.would.label,
        "would_reply": verdict.would_reply.line() if verdict.would_reply else None,
    }


def decision_fields(
    message: Message,
    sender: Sender,
    verdict: Verdict,
    stage: Stage,
    latency_ms: float,
    log_addresses: bool,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": "decision",
        "stage": stage.name.lower(),
        "queue_id": message.queue_id,
        "ref": verdict.ref,
        "client_address": str(message.client_address) if message.client_address else None,
        "vps": sender.vps,
        "customer": sender.customer,
        "sasl_user": message.sasl_user,
        "recipient_count": message.rcpt_count,
        "header_count": message.header_count,
        "body_size": message.body_size,
        "action": verdict.action.label,
        "reply": verdict.reply.line() if verdict.reply else None,
        **_shadow_fields(verdict),
        "score": verdict.score,
        "findings": [f.as_dict() for f in verdict.findings],
        "latency_ms": round(latency_ms, 3),
    }
    if log_addresses:
        fields["sender"] = message.mail_from
    else:
        fields["sender_domain"] = message.sender_domain
        for finding in fields["findings"]:
            finding.pop("evidence", None)
    return fields


def log_decision(fields: dict[str, Any]) -> None:
    log.info("decision", extra={"fields": fields})
