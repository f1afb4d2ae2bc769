"""URL and sender domain reputation from DNS blocklists (SURBL/URIBL/DBL style).

Each configured zone is asked `<registered domain>.<zone> A` for the message's
URL domains or its envelope/From domains, through the message's DNS session:
the same budget, lookup cap and cache as every other lookup of the message.
A listed domain is a finding; which return codes count, and their scores, are
the policy's (`[[reputation.lists]]`).
"""

from __future__ import annotations

import ipaddress
import logging
from email.utils import parseaddr

from relaywarden import metrics
from relaywarden.checks import Check, Context, Stage
from relaywarden.content.decode import registered_domain
from relaywarden.domains import domain_of
from relaywarden.errors import DnsError
from relaywarden.policy.content import BlocklistZone
from relaywarden.verdict import Finding

log = logging.getLogger("relaywarden.content")

NAME = "reputation"
_REFUSED = ipaddress.ip_network("127.255.255.0/24")  # "query refused", "over quota"
_LISTED = ipaddress.ip_network("127.0.0.0/8")


def _domains(ctx: Context, zone: BlocklistZone, limit: int) -> list[str]:
    msg = ctx.message
    if zone.applies_to == "urls":
        view = msg.content
        found = sorted(view.url_domains) if view is not None else []
    else:
        _, address = parseaddr(msg.first_header("From") or "")
        found = sorted({registered_domain(d) for d in (msg.sender_domain, domain_of(address)) if d})
    return [d for d in found if not d.replace(".", "").isdigit()][:limit]


def _score(zone: BlocklistZone, addresses: list[str]) -> tuple[float, str] | None:
    """The score of the strongest return code that counts, and that code."""
    best: tuple[float, str] | None = None
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if zone.codes:
            score = zone.codes.get(text)
        elif addr in _LISTED and addr not in _REFUSED:
            score = zone.score
        else:
            score = None
        if score is not None and (best is None or score > best[0]):
            best = (score, text)
    return best


def _ask(ctx: Context, zone: BlocklistZone, domain: str) -> list[str]:
    answer = ctx.resolver.lookup(f"{domain}.{zone.zone.strip('.')}", "A")
    return [] if answer.nxdomain else [r.to_text() for r in answer.records]


def run(ctx: Context) -> list[Finding]:
    cfg = ctx.policy.reputation
    if not cfg.lists or ctx.resolver is None:
        return []
    findings = []
    for zone in cfg.lists:
        try:
            for domain in _domains(ctx, zone, cfg.max_domains):
                hit = _score(zone, _ask(ctx, zone, domain))
                if hit is None:
                    continue
                findings.append(
                    Finding(
                        check=NAME,
                        name=f"dnsbl-{zone.applies_to[:-1]}",
                        score=hit[0],
                        evidence={"zone": zone.zone, "domain": domain, "code": hit[1]},
                        reason=f"{domain} is on a blocklist",
                    )
                )
                break  # one listed domain per list is the finding; save the budget
        except DnsError as exc:
            if cfg.on_error == "dns":
                raise
            metrics.DEPENDENCY_ERRORS.labels(service="dns", check=NAME).inc()
            log.warning("blocklist %s skipped for this message: %s", zone.zone, exc)
    return findings


# The URLs come from the content view, built from the body.
CHECK = Check(NAME, Stage.EOM, run, needs_body=lambda policy: policy.content.enabled)
