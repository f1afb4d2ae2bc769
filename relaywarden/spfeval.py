"""SPF (RFC 7208) evaluated by pyspf, with its lookups done by our resolver.

pyspf keeps RFC 7208's limits (10 mechanisms that look up, 2 void lookups) and
calls one module-level lookup function; we point it at the DNS session of the
message being checked, so SPF lookups share the message's budget, cap and cache.
A `DnsError` (timeout, budget spent) is not an SPF result: it leaves pyspf
untouched and becomes the policy's fail mode.
"""

from __future__ import annotations

import contextvars
from typing import Any

import spf

from relaywarden.dns import DnsSession

_SESSION: contextvars.ContextVar[DnsSession] = contextvars.ContextVar("relaywarden_spf_dns")


def _value(rdtype: str, rdata: Any) -> Any:
    """An rdata in the shape pyspf's own dnspython driver returns."""
    if rdtype in ("A", "AAAA"):
        return rdata.address
    if rdtype == "MX":
        return (rdata.preference, rdata.exchange)
    if rdtype == "PTR":
        return rdata.target.to_text(True)
    return rdata.strings


def _lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    if qtype not in ("A", "AAAA", "MX", "PTR", "TXT"):
        return []  # the obsolete SPF RR type: RFC 7208 says look up TXT only
    answer = _SESSION.get().lookup(name, qtype)
    return [((name, qtype), _value(qtype, r)) for r in answer.records]


spf.DNSLookup = _lookup


def spf_result(session: DnsSession, ip: str, domain: str, helo: str = "relay.invalid") -> str:
    """pass, fail, softfail, neutral, none, permerror or temperror for `ip` sending as `domain`."""
    token = _SESSION.set(session)
    try:
        query = spf.query(i=ip, s=f"postmaster@{domain}", h=helo, querytime=0)
        result, _code, _text = query.check()
        return str(result)
    finally:
        _SESSION.reset(token)
