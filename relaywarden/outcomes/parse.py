"""Postfix log lines -> delivery events.

One line at a time, no state. The shapes handled are those Postfix 3.7 writes
(tests/data/maillog-postfix.txt was recorded from the devstack): a delivery
agent's `QID: to=<...>, ..., dsn=X.Y.Z, status=sent|deferred|bounced|...`, qmgr's
`QID: from=<...>, status=expired, returned to sender`, and smtpd's SASL
authentication failures. Lines Postfix writes about other things (connects,
queue management, cleanup) are recognised as `Ignored`; anything else is
`Unknown`, counted by the watcher and never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["delivered", "deferred", "bounced", "expired"]

# "Nov 29 13:27:15 host prog[pid]: text" (BSD syslog, postlogd) or
# "2026-11-29T13:27:15.123456+00:00 host prog[pid]: text" (rsyslog's precise format).
_LINE = re.compile(
    r"^(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ "
    r"(?P<prog>[\w.-]+(?:/[\w.-]+)+)(?:\[\d+\])?: (?P<text>.*)$"
)
# Short (hex) and long (enable_long_queue_ids) queue ids.
_LONG = "[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]"  # base 52 without vowels; "z" separates
_QID = rf"(?P<qid>[0-9A-F]{{6,16}}|{_LONG}{{10,20}}z{_LONG}{{3,12}})"
_DELIVERY = re.compile(
    _QID + r": to=<(?P<rcpt>[^>]*)>,.*?(?:, dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}))?, "
    r"status=(?P<status>sent|deferred|bounced|expired|undeliverable|deliverable)\b"
)
_EXPIRED = re.compile(_QID + r": from=<[^>]*>, status=expired, returned to sender")
_AUTH_FAILED = re.compile(
    r"^warning: [^\s\[]*\[(?P<addr>[0-9A-Fa-f:.]+)\](?::\d+)?: SASL [\w-]+ authentication failed"
    r"(?:.*?, sasl_username=(?P<login>[^\s,]+))?"
)
# Delivery agents whose status lines are outcomes of a message.
_AGENTS = frozenset({"smtp", "lmtp", "error", "retry", "local", "virtual", "pipe"})
# Lines that are about something else, recognised so that Unknown means unknown.
_OTHER = re.compile(
    r"^(?:connect (?:from|to) |disconnect from |lost connection |timeout after |"
    r"NOQUEUE: |statistics: |warning: |daemon started|reload |terminating |"
    r"starting the Postfix|refreshing the Postfix|stopping the Postfix|"
    + _QID
    + r": (?:client=|message-id=|from=<|removed$|sender non-delivery notification|"
    r"sender delivery status notification|resent-message-id=|uid=|hold: |released from hold|"
    r"reject: |discard: |milter-|host \S+ said: |enabling PIX|lost connection|conversation with))"
)


@dataclass(frozen=True)
class Delivery:
    queue_id: str
    status: Status
    dsn: str


@dataclass(frozen=True)
class AuthFailure:
    address: str
    login: str


@dataclass(frozen=True)
class Ignored:
    pass


@dataclass(frozen=True)
class Unknown:
    pass


Event = Delivery | AuthFailure | Ignored | Unknown
IGNORED = Ignored()
UNKNOWN = Unknown()
_STATUS: dict[str, Status] = {
    "sent": "delivered",
    "deliverable": "delivered",  # address verification probes: not sent mail, but harmless
    "deferred": "deferred",
    "bounced": "bounced",
    "undeliverable": "bounced",
    "expired": "expired",
}


def parse(line: str) -> Event:
    """What one log line says, if anything, about a message's fate."""
    m = _LINE.match(line.rstrip("\r\n"))
    if m is None:
        return UNKNOWN
    service = m["prog"].rsplit("/", 1)[1]
    if not m["prog"].split("/", 1)[0].startswith("postfix"):
        return IGNORED  # another program in the same syslog file
    text = m["text"]
    if service in _AGENTS:
        d = _DELIVERY.match(text)
        if d is not None:
            return Delivery(d["qid"], _STATUS[d["status"]], d["dsn"] or "")
    elif service == "qmgr":
        e = _EXPIRED.match(text)
        if e is not None:
            return Delivery(e["qid"], "expired", "")
    elif service == "smtpd":
        a = _AUTH_FAILED.match(text)
        if a is not None:
            return AuthFailure(a["addr"], a["login"] or "")
    if _OTHER.match(text) or service in ("master", "postfix-script", "scache", "anvil", "postlogd"):
        return IGNORED
    return UNKNOWN
