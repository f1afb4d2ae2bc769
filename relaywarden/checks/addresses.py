"""Address validity: a sender address that is not an address cannot be answered.

Syntax only (email-validator, no DNS): deliverability is the sender check's job.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from relaywarden.addrparse import parsed_fields
from relaywarden.checks import Check, Context, Stage
from relaywarden.verdict import Action, Finding, RejectReply

NAME = "addresses"
_REPLY = RejectReply(550, "5.1.7", "Invalid sender address")
_OVERSIZED = RejectReply(550, "5.6.0", "From, Sender or Reply-To header too long")
ADDRESS_HEADERS = ("From", "Sender", "Reply-To")


# A relay sees the same senders over and over; validating one costs ~0.1 ms.
@lru_cache(maxsize=8192)
def address_problem(address: str) -> str | None:
    """Why `address` is not a valid mailbox, or None when it is."""
    try:
        validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=True,
            allow_domain_literal=False,
        )
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _invalid(name: str, address: str, problem: str) -> Finding:
    return Finding(
        check=NAME,
        name=name,
        evidence={"address": address[:320], "problem": problem},
        action=Action.REJECT,
        reply=_REPLY,
        reason="invalid sender address",
    )


def run_envelope(ctx: Context) -> list[Finding]:
    if not ctx.policy.checks.addresses.enabled:
        return []
    sender = ctx.message.mail_from
    if not sender:  # the null sender <> is valid: bounces and DSNs use it
        return []
    problem = address_problem(sender)
    return [_invalid("invalid-envelope-sender", sender, problem)] if problem else []


def _oversized(ctx: Context) -> list[Finding]:
    cap = ctx.policy.checks.addresses.max_header_bytes
    for header in ADDRESS_HEADERS:
        for parsed in parsed_fields(ctx.message, header, cap):
            if parsed.oversized:
                return [
                    Finding(
                        check=NAME,
                        name="oversized-address-header",
                        evidence={"header": header, "bytes": parsed.size, "limit": cap},
                        action=Action.REJECT,
                        reply=_OVERSIZED,
                        reason="address header too long to judge",
                    )
                ]
    return []


def run_from_header(ctx: Context) -> list[Finding]:
    section = ctx.policy.checks.addresses
    if not section.enabled:
        return []
    findings = _oversized(ctx)
    for field, parsed in zip(
        ctx.message.header_fields("From"),
        parsed_fields(ctx.message, "From", section.max_header_bytes),
        strict=True,
    ):
        if parsed.oversized:
            continue
        addresses = [addr for _, addr in parsed.addresses if addr]
        if parsed.ambiguous or not addresses:
            problem = parsed.problem or "no address in From"
            findings.append(_invalid("invalid-from-header", field.unfolded[:320], problem))
            continue
        for address in addresses:
            why = address_problem(address)
            if why:
                findings.append(_invalid("invalid-from-header", address, why))
    return findings


ENVELOPE = Check("addresses.envelope", Stage.MAIL, run_envelope)
FROM_HEADER = Check("addresses.from", Stage.EOM, run_from_header)
