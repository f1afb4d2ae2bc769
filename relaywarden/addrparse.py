"""Address-list parsing that refuses to guess.

`email.utils.getaddresses` without `strict` (only in newer Pythons) silently
reads some malformed lists as a different address (CVE-2023-27043). The header
registry's RFC 5322 parser records defects instead; any defect makes the parse
ambiguous and the caller treats that as a finding, never as an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import HeaderRegistry

_REGISTRY = HeaderRegistry()


@dataclass(frozen=True)
class ParsedAddresses:
    addresses: tuple[tuple[str, str], ...]  # (display name, addr-spec)
    ambiguous: bool
    problem: str = ""


def parse_address_list(value: str, header: str = "From") -> ParsedAddresses:
    try:
        parsed = _REGISTRY(header, value.replace("\r", " ").replace("\n", " "))
        defects = list(parsed.defects)
        pairs = []
        for group in parsed.groups:  # type: ignore[attr-defined]
            for addr in group.addresses:
                defects += getattr(addr, "defects", [])
                pairs.append((addr.display_name, addr.addr_spec))
    except Exception as exc:  # the parser raises on some inputs: that is ambiguity too
        return ParsedAddresses((), True, f"unparsable: {type(exc).__name__}")
    # SMTPUTF8 allows a non-ASCII local part; email-validator judges it later.
    defects = [d for d in defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        return ParsedAddresses(tuple(pairs), True, str(defects[0]))
    return ParsedAddresses(tuple(pairs), False)
