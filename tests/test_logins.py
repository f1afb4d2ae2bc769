"""The login-spread judgement and the optional MaxMind-format evidence."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

from relaywarden.logins import geo
from relaywarden.logins.spread import judge, network_of
from relaywarden.policy.schema import Policy
from relaywarden.verdict import Action


def cfg(**logins: object) -> Policy:
    return Policy.model_validate({"logins": logins})


def test_networks_are_counted_at_the_policy_prefixes() -> None:
    logins = cfg(ipv4_prefix=24, ipv6_prefix=48).logins
    assert network_of(ipaddress.ip_address("198.51.100.77"), logins) == "198.51.100.0/24"
    assert network_of(ipaddress.ip_address("2001:db8:1:2::9"), logins) == "2001:db8:1::/48"
    wider = cfg(ipv4_prefix=16).logins
    assert network_of(ipaddress.ip_address("198.51.100.77"), wider) == "198.51.0.0/16"


def test_over_the_threshold_is_a_forced_tempfail() -> None:
    logins = cfg(max_networks=3).logins
    nets = [f"198.18.{n}.0/24" for n in range(4)]
    assert judge("alice", nets[:3], logins) == []
    (finding,) = judge("alice", nets, logins)
    assert finding.action == Action.TEMPFAIL and finding.reply is not None
    assert finding.reply.code == 451
    assert finding.evidence["networks"] == 4 and finding.evidence["threshold"] == 3
    assert "user:alice sent from 4 client networks" in finding.evidence["explain"]


def test_maxmind_database_adds_countries_and_asns(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-Geo")
    writer.insert_network(
        IPSet(["198.18.0.0/24"]),
        {"country": {"iso_code": "DE"}, "autonomous_system_number": 3320},
    )
    writer.insert_network(
        IPSet(["198.18.1.0/24"]),
        {"country": {"iso_code": "BR"}, "autonomous_system_number": 28573},
    )
    path = tmp_path / "tiny.mmdb"
    writer.to_db_file(str(path))
    logins = cfg(max_networks=1, geoip_db=str(path)).logins
    (finding,) = judge("alice", ["198.18.0.0/24", "198.18.1.0/24", "198.18.9.0/24"], logins)
    assert finding.evidence["countries"] == ["BR", "DE"]
    assert finding.evidence["asns"] == [3320, 28573]
    assert geo.place(str(path), "198.18.9.0/24") == {}  # not in the database


def test_a_missing_database_leaves_networks_alone(tmp_path: Path) -> None:
    logins = cfg(max_networks=1, geoip_db=str(tmp_path / "absent.mmdb")).logins
    (finding,) = judge("alice", ["198.18.0.0/24", "198.18.1.0/24"], logins)
    assert "countries" not in finding.evidence and finding.evidence["networks"] == 2
