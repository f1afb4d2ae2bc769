"""Spoofed senders: domains the customer does not own, domains that asked the
world (DMARC) to refuse mail the relay cannot authenticate, and sender domains
that do not exist.

DNS goes through the message's session (`ctx.resolver`), so every lookup counts
against its budget; a `DnsError` becomes the policy's `[dns] on_error`.
"""

from __future__ import annotations

from relaywarden import domains
from relaywarden.addrparse import parsed_fields
from relaywarden.checks import Check, Context, Stage
from relaywarden.dns import DnsSession
from relaywarden.spfeval import spf_result
from relaywarden.verdict import Action, Finding, RejectReply

NAME = "sender"
NO_SUCH_DOMAIN = RejectReply(550, "5.1.8", "Sender address domain does not exist")
DMARC_REPLY = (
    "{domain} publishes a DMARC policy that tells receivers to refuse mail this relay "
    "cannot authenticate for it; send as a domain of your own"
)
DMARC_ACTIONS = {"reject": Action.REJECT, "quarantine": Action.QUARANTINE}


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


def dmarc_policy(session: DnsSession, domain: str) -> tuple[str, str] | None:
    """(record's domain, policy) from `_dmarc.domain`, else the organisational domain's
    (its `sp=` applies to subdomains), or None when neither publishes DMARC."""
    org = domains.org_domain(domain)
    for where in dict.fromkeys((domain, org)):
        for text in session.txt(f"_dmarc.{where}"):
            tags = parse_tags(text)
            if tags.get("v") != "DMARC1" or "p" not in tags:
                continue
            policy = tags["p"]
            if where != domain:
                policy = tags.get("sp", policy)
            return where, policy.lower()
    return None


def parse_tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    if "v" in tags:
        tags["v"] = tags["v"].upper()
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


def dmarc_spoof(ctx: Context, from_doms: list[str]) -> list[Finding]:
    section = ctx.policy.checks.sender
    session: DnsSession | None = ctx.resolver
    relay = ctx.policy.relay
    if section.dmarc_action == "none" or session is None or not relay.outbound_ips:
        return []  # without the relay's outbound addresses SPF cannot be judged
    owned = domains.org_domains(ctx.sender.owned_domains)
    for domain in from_doms:
        if owned and domains.within(domain, owned):
            continue
        found = dmarc_policy(session, domain)
        if found is None or found[1] not in DMARC_ACTIONS:
            continue
        authorised, spf = relay_authorised(ctx, session, domain)
        if authorised:
            continue
        action = DMARC_ACTIONS[section.dmarc_action]
        return [
            Finding(
                NAME,
                "dmarc-spoof",
                section.weights.dmarc_spoof,
                {"domain": domain, "dmarc_domain": found[0], "dmarc_policy": found[1], "spf": spf},
                action=action,
                reply=RejectReply(550, "5.7.1", DMARC_REPLY.format(domain=_reply_domain(domain)))
                if action == Action.REJECT
                else None,
                reason="spoofed sender domain",
            )
        ]
    return []


def run_message(ctx: Context) -> list[Finding]:
    if not ctx.policy.checks.sender.enabled:
        return []
    from_doms = from_domains(ctx)
    return [*ownership(ctx, from_doms), *org_mismatch(ctx, from_doms), *dmarc_spoof(ctx, from_doms)]


ENVELOPE = Check("sender.envelope", Stage.MAIL, run_envelope)
MESSAGE = Check("sender.message", Stage.EOM, run_message)
