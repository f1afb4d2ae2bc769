"""Return paths reduced to the sender they stand for.

Mailing lists and bulk senders give every message (or every recipient) its own
envelope sender so bounces can be matched: VERP (`list-bounces+bob=example.org@`),
per-message ids (`bounce-4711-bob=example.org@`, `0100018f3ab2c4d1…@`), BATV
(`prvs=1234abcd=news@`) and, after forwarding, SRS
(`SRS0=HHH=TT=shop.example=news@forwarder`). Counted as written, such a list
is one Redis key per message and never reaches a per-sender limit; a `sender:`
block on the list address would miss every message. `sender_key` maps all of
them to one address: the sender scope, `sender:` blocks and `status` use it.

Only the local part's decorations are removed; the domain is kept (lower-cased).
Nothing here is trusted for identity: it only decides which counter a message
shares with its siblings.
"""

from __future__ import annotations

import re

# BATV (draft-levine-smtp-batv): prvs=TAG=local, and Microsoft's msprvs1=TAG=local.
_BATV = re.compile(r"^(?:prvs|msprvs1|btv1)=[^=]*=(.+)$")
# SRS (Shevek's Sender Rewriting Scheme): SRS0=hash=time=domain=local, and SRS1
# (a second forwarder) =...==hash=time=domain=local: the original address.
_SRS = re.compile(r"^srs[01][=+-].*?=([^=]+)=([^=]+)$")
# A per-message id inside the local part: a run of 12+ hex or 6+ decimal digits
# anywhere, or a whole segment (between - . _) of 3+ digits or of 4+ hex digits
# holding a digit (`bounce-4711`, SES's `…-aa11bb22-…`): list software numbers
# bounces this way, people rarely do.
_SEG = r"(?<![^-._]){}(?![^-._])"
_ID = re.compile(
    "|".join(
        [
            r"[0-9a-f]{12,}",
            r"[0-9]{6,}",
            _SEG.format(r"(?=[0-9a-f]*[0-9])[0-9a-f]{4,}"),
            _SEG.format(r"[0-9]{3,}"),
        ]
    )
)
# In a VERP address every numeric segment is an id (`list-return-42-bob=…`).
_VERP_ID = re.compile(r"(?<![^-._])[0-9]+(?![^-._])")


def _local(local: str) -> str:
    batv = _BATV.match(local)
    if batv:
        local = batv.group(1)
    # +tag and Postfix/Mailman VERP: list-bounces+bob=example.org
    local = local.split("+", 1)[0]
    # Dash-style VERP (ezmlm, many ESPs): list-return-42-bob=example.org
    if "=" in local:
        head = local.split("=", 1)[0]
        local = _VERP_ID.sub("#", head.rsplit("-", 1)[0] if "-" in head else head)
    return _ID.sub("#", local) or local


def sender_key(address: str) -> str:
    """The sender an envelope address stands for (lower-case); '' stays ''."""
    text = address.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    srs = _SRS.match(local)
    if srs:
        domain, local = srs.group(1), srs.group(2)
    return f"{_local(local)}@{domain}"
