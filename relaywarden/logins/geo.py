"""Countries and ASNs of client networks, from an optional MaxMind-format database.

`[logins] geoip_db` names a GeoLite2/GeoIP2 Country, City or ASN file that the
operator provides; RelayWarden ships none and downloads none. Without it (or
without the `maxminddb` package) the login check works on networks alone.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import Any

log = logging.getLogger("relaywarden.logins")


@functools.lru_cache(maxsize=4)
def _reader(path: str) -> Any:
    try:
        import maxminddb
    except ImportError:
        log.warning("[logins] geoip_db is set but the maxminddb package is not installed")
        return None
    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError) as exc:
        log.warning("cannot open [logins] geoip_db %s: %s", path, exc)
        return None


def place(path: str, network: str) -> dict[str, Any]:
    """{"country": "DE", "asn": 3320} as far as the database knows the network."""
    reader = _reader(path) if path else None
    if reader is None:
        return {}
    try:
        record = reader.get(str(ipaddress.ip_network(network, strict=False).network_address))
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    out: dict[str, Any] = {}
    country = record.get("country")
    if isinstance(country, dict) and isinstance(country.get("iso_code"), str):
        out["country"] = country["iso_code"]
    if isinstance(record.get("autonomous_system_number"), int):
        out["asn"] = record["autonomous_system_number"]
    return out


def describe(path: str, networks: list[str]) -> list[dict[str, Any]]:
    if not path:
        return []
    return [{"network": n, **place(path, n)} for n in networks]
