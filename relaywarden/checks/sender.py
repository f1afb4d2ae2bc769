"""Spoofed senders: domains the customer does not own, domains that asked the
world (DMARC) to refuse mail the relay cannot authenticate, and sender domains
that do not exist.

DNS goes through the message's session (`ctx.resolver`), so every lookup counts
against its budget; a `DnsError` becomes the policy's `[dns] on_error`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from relaywarden import dkimverify, domains, metrics
from relaywarden.addrparse import parsed_fields
from relaywarden.checks import Check, Context, Stage
from relaywarden.dns import DnsSession
from relaywarden.errors import DnsError
from relaywarden.spfeval import spf_result
from relaywarden.verdict import Action, Finding, RejectReply

NAME = "sender"
NO_SUCH_DOMAIN = RejectReply(550, "5.1.8", "Sender address domain does not exist")
DMARC_REPLY = (
    "{domain} publishes a DMARC policy that tells receivers to refuse mail this relay "
    "cannot authenticate for it; send as a domain of your own"
)
OTHER_CUSTOMER_REPLY = (
    "{domain} belongs to another customer of this relay; send as a domain of your own"
)
DMARC_ACTIONS = {"reject": Action.REJECT, "quarantine": Action.QUARANTINE}
MESSAGE_NAME = "sender.message"
log = logging.getLogger("relaywarden.checks.sender")


def from_domains(ctx: Context) -> list[str]:
    """Every domain the From could name: an ambiguous From is judged on each of
    its readings (the addresses check refuses it as well, on its own account)."""
    cap = ctx.policy.checks.addresses.max_header_bytes
    out: list[str] = []
    for parsed in parsed_fields(ctx.message, "From", cap):
        out += [domains.normalise(d) for d in parsed.domains]
    return sorted(set(out))


def run_envelope(ctx: Context) -> list[Finding]:
    """At MAIL FROM: a sender domain that does not exist cannot take a bounce."""
    section = ctx.policy.checks.sender
    domain = ctx.message.sender_domain
    if not (section.enabled and section.reject_nonexistent_domain and domain and ctx.resolver):
        return []
    session: DnsSession = ctx.resolver
    if session.domain_exists(domain):
        return []
    return [
        Finding(
            NAME,
            "nonexistent-domain",
            evidence={"domain": domain[:255]},
            action=Action.REJECT,
            reply=NO_SUCH_DOMAIN,
            reason="sender domain does not exist",
        )
    ]


def ownership(ctx: Context, from_doms: list[str]) -> list[Finding]:
    owned = domains.org_domains(ctx.sender.owned_domains)
    if not owned:
        return []  # ownership is only judged where the inventory lists the domains
    weight = ctx.policy.checks.sender.foreign_weight(ctx.sender.plan)
    candidates = [ctx.message.sender_domain, *from_doms]
    foreign = sorted({d for d in candidates if d and not domains.within(d, owned)})
    if not foreign:
        return []
    evidence = {"domains": foreign, "customer": ctx.sender.customer or "", "plan": ctx.sender.plan}
    return [
        Finding(
            NAME, "foreign-domain", weight, evidence, reason="sending as a domain you do not own"
        )
    ]


def org_mismatch(ctx: Context, from_doms: list[str]) -> list[Finding]:
    envelope = ctx.message.sender_domain
    if not envelope or not from_doms:
        return []
    env_org = domains.org_domain(envelope)
    others = [d for d in from_doms if domains.org_domain(d) != env_org]
    if not others:
        return []
    weight = ctx.policy.checks.sender.weights.org_mismatch
    evidence = {"envelope": envelope, "from": others[:5]}
    return [Finding(NAME, "org-mismatch", weight, evidence, reason="envelope and From differ")]


@dataclass(frozen=True)
class DmarcPolicy:
    domain: str  # where the record was found (the From domain or its org domain)
    policy: str  # none | quarantine | reject (an invalid p reads as none, RFC 7489 §6.3)
    pct: int = 100
    testing: bool = False  # t=y (DMARCbis): the owner is only trying the policy out

    @property
    def soft(self) -> bool:
        return self.pct < 100 or self.testing


def _records(texts: list[str]) -> list[dict[str, str]]:
    """DMARC records among TXT strings: `v=DMARC1` must be the first tag (§6.6.3)."""
    out = []
    for text in texts:
        tags = parse_tags(text)
        if next(iter(tags.items()), None) == ("v", "DMARC1"):
            out.append(tags)
    return out


def _policy_value(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("none", "quarantine", "reject") else None


def dmarc_policy(session: DnsSession, domain: str) -> DmarcPolicy | None:
    """RFC 7489 §6.6.3 policy discovery: the From domain's record, else its
    organisational domain's (whose `sp=` then applies); several records at one
    level mean no policy at all; None when there is none."""
    org = domains.org_domain(domain)
    for where in dict.fromkeys((domain, org)):
        records = _records(session.txt(f"_dmarc.{where}"))
        if not records:
            continue
        if len(records) > 1:
            return None  # ambiguous: DMARC is not applied
        tags = records[0]
        policy = _policy_value(tags.get("p")) or "none"
        if where != domain:
            policy = _policy_value(tags.get("sp")) or policy
        try:
            pct = min(100, max(0, int(tags.get("pct", "100"))))
        except ValueError:
            pct = 100
        return DmarcPolicy(where, policy, pct, tags.get("t", "").lower() == "y")
    return None


def parse_tags(text: str) -> dict[str, str]:
    """Tag=value pairs in the order written; tag names are case-insensitive."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def relay_authorised(ctx: Context, session: DnsSession, domain: str) -> tuple[bool, dict[str, str]]:
    """Would the relay pass DMARC for `domain`: it DKIM-signs for it, or its SPF
    passes for every address the relay's mail leaves from (aligned: SPF of the
    From domain itself)."""
    relay = ctx.policy.relay
    if domains.within(domain, domains.org_domains(relay.dkim_domains)):
        return True, {"dkim": "relay signs"}
    helo = relay.hostnames[0] if relay.hostnames else "relay.invalid"
    results = {ip: spf_result(session, ip, domain, helo) for ip in relay.outbound_ips}
    return bool(results) and all(r == "pass" for r in results.values()), results


def _reply_domain(domain: str) -> str:
    """The domain as it may appear in an SMTP reply: ASCII (A-labels) or not at all."""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "Your From domain"


def other_customer(ctx: Context, from_doms: list[str]) -> list[Finding]:
    """A domain another customer of the provider owns: the relay would vouch for
    the spoof (its SPF is in that domain's record). Forced, whatever the score."""
    if ctx.sender.customer is None:
        # A client in no inventory entry is nobody's customer we could tell
        # apart from the owner (its own VPS not listed yet): not forced here;
        # DMARC and relay-spf-unowned still judge what it sends.
        return []
    owners = ctx.sender.domain_owners
    taken = {}
    for domain in dict.fromkeys([ctx.message.sender_domain, *from_doms]):
        owner = owners.owner(domain) if domain else None
        if owner is not None and owner != ctx.sender.customer:
            taken[domain] = owner
    if not taken:
        return []
    section = ctx.policy.checks.sender
    action = DMARC_ACTIONS[section.other_customer_domain]
    first = sorted(taken)[0]
    reply = RejectReply(550, "5.7.1", OTHER_CUSTOMER_REPLY.format(domain=_reply_domain(first)))
    return [
        Finding(
            NAME,
            "other-customer-domain",
            0.0,  # the forced action carries it
            {"domains": sorted(taken)[:5], "owners": sorted(set(taken.values()))[:5]},
            action=action,
            reply=reply if action == Action.REJECT else None,
            reason="sending as another customer's domain",
        )
    ]


class _Authorisation:
    """relay_authorised per domain, asked at most once per message."""

    def __init__(self, ctx: Context, session: DnsSession) -> None:
        self.ctx, self.session = ctx, session
        self.seen: dict[str, tuple[bool, dict[str, str]]] = {}

    def __call__(self, domain: str) -> tuple[bool, dict[str, str]]:
        if domain not in self.seen:
            self.seen[domain] = relay_authorised(self.ctx, self.session, domain)
        return self.seen[domain]


def _dns_failed(ctx: Context, domain: str, exc: DnsError) -> None:
    """`[dns] on_error = "open"`: this domain's lookups are skipped, nothing else."""
    if ctx.policy.dns.on_error != "open":
        raise exc
    metrics.DEPENDENCY_ERRORS.labels(service="dns", check=MESSAGE_NAME).inc()
    log.warning("DNS failed for %s in the sender check: %s; skipped (fail open)", domain, exc)


def relay_spf_unowned(
    ctx: Context, authorised: _Authorisation, candidates: list[str]
) -> list[Finding]:
    """No customer owns the domain, yet its SPF authorises the relay: whoever
    sends as it through us passes SPF (and DMARC) at receivers, whatever p= says."""
    relay_signed = domains.org_domains(ctx.policy.relay.dkim_domains)
    owners, owned = ctx.sender.domain_owners, domains.org_domains(ctx.sender.owned_domains)
    weight = ctx.policy.checks.sender.weights.relay_spf_unowned
    for domain in candidates:
        if owners.owner(domain) is not None or domains.within(domain, owned | relay_signed):
            continue
        try:
            passes, spf = authorised(domain)
        except DnsError as exc:
            _dns_failed(ctx, domain, exc)
            continue
        if passes:
            evidence = {"domain": domain, "spf": spf}
            reason = "unowned domain whose SPF authorises the relay"
            return [Finding(NAME, "relay-spf-unowned", weight, evidence, reason=reason)]
    return []


def _spoof(ctx: Context, domain: str, found: DmarcPolicy, spf: dict[str, str]) -> Finding:
    section = ctx.policy.checks.sender
    choice = section.dmarc_soft_action if found.soft else section.dmarc_action
    action = DMARC_ACTIONS.get(choice)
    evidence: dict[str, object] = {
        "domain": domain,
        "dmarc_domain": found.domain,
        "dmarc_policy": found.policy,
        "spf": spf,
    }
    if found.soft:
        evidence.update(pct=found.pct, testing=found.testing)
    reply = RejectReply(550, "5.7.1", DMARC_REPLY.format(domain=_reply_domain(domain)))
    return Finding(
        NAME,
        "dmarc-spoof",
        # Softened: the soft action alone decides, the score must not undo it.
        0.0 if found.soft else section.weights.dmarc_spoof,
        evidence,
        action=action,
        reply=reply if action == Action.REJECT else None,
        reason="spoofed sender domain",
    )


def dmarc_spoof(ctx: Context, authorised: _Authorisation, from_doms: list[str]) -> list[Finding]:
    section = ctx.policy.checks.sender
    if section.dmarc_action == "none" or not ctx.policy.relay.outbound_ips:
        return []  # without the relay's outbound addresses SPF cannot be judged
    owned = domains.org_domains(ctx.sender.owned_domains)
    for domain in from_doms:
        if owned and domains.within(domain, owned):
            continue
        try:
            found = dmarc_policy(authorised.session, domain)
            if found is None or found.policy not in DMARC_ACTIONS:
                continue
            passes, spf = authorised(domain)
            if passes or dkim_aligned(ctx, authorised.session, domain):
                continue
        except DnsError as exc:
            _dns_failed(ctx, domain, exc)
            continue
        return [_spoof(ctx, domain, found, spf)]
    return []


def dkim_aligned(ctx: Context, session: DnsSession, domain: str) -> bool:
    """A valid DKIM signature aligned with `domain` (relaxed alignment: the same
    organisational domain, RFC 7489 §3.1.1); see relaywarden/dkimverify.py."""
    if not dkimverify.has_signature(ctx.message):
        return False
    org = domains.org_domain(domain)
    results = dkimverify.signatures(ctx.message, session)
    return any(ok and domains.org_domain(d) == org for d, ok in results)


def run_message(ctx: Context) -> list[Finding]:
    if not ctx.policy.checks.sender.enabled:
        return []
    from_doms = from_domains(ctx)
    # DNS-free findings first: a failed lookup never takes them away.
    out = [
        *other_customer(ctx, from_doms),
        *ownership(ctx, from_doms),
        *org_mismatch(ctx, from_doms),
    ]
    session: DnsSession | None = ctx.resolver
    if session is None or any(f.action == Action.REJECT for f in out):
        return out
    authorised = _Authorisation(ctx, session)
    out += dmarc_spoof(ctx, authorised, from_doms)
    if ctx.policy.relay.outbound_ips:
        candidates = list(dict.fromkeys([ctx.message.sender_domain, *from_doms]))
        out += relay_spf_unowned(ctx, authorised, [d for d in candidates if d])
    return out


ENVELOPE = Check("sender.envelope", Stage.MAIL, run_envelope)
# DKIM-aware DMARC verifies a signature over the body.
MESSAGE = Check(MESSAGE_NAME, Stage.EOM, run_message, needs_body=lambda p: p.checks.sender.enabled)
