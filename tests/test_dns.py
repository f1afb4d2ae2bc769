"""The resolver against the real test DNS server: answers, NXDOMAIN and NODATA,
TTL-honouring cache (negative answers too), the per-message budget and cap, and
a nameserver that never answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywarden.devstack.dns import DnsServer
from relaywarden.dns import DnsBudgetExhausted, Resolver, parse_nameserver
from relaywarden.errors import DnsError
from relaywarden.spfeval import spf_result

pytestmark = pytest.mark.timeout(120)

EXTRA = """\
short.example. 5 IN A 192.0.2.50
loop.example. 300 IN TXT "v=spf1 include:loop.example -all"
voids.example. 300 IN TXT "v=spf1 a:v1.voids.example a:v2.voids.example a:v3.voids.example -all"
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from relaywarden.devstack.dns import DEFAULT_ZONES

    server = DnsServer(Path(tmp_path_factory.mktemp("dns")), DEFAULT_ZONES + "\n" + EXTRA)
    try:
        yield server.start()
    finally:
        server.stop()


def test_parse_nameserver() -> None:
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:53") == ("::1", 53)
    assert parse_nameserver("192.0.2.1") == ("192.0.2.1", 53)
    with pytest.raises(ValueError):
        parse_nameserver("127.0.0.1:99999")


def test_answers_nxdomain_and_nodata(nameserver: str) -> None:
    session = Resolver([nameserver]).session()
    assert [r.address for r in session.lookup("shop.example", "A").records] == ["192.0.2.80"]
    assert session.txt("_dmarc.paypal.com")[0].startswith("v=DMARC1; p=reject")
    assert session.lookup("nxdomain.example", "A").nxdomain
    nodata = session.lookup("shop.example", "AAAA")
    assert not nodata.nxdomain and not nodata.records
    assert session.domain_exists("shop.example") and not session.domain_exists("nxdomain.example")
    assert session.domain_exists("café.example")  # IDNA: xn--caf-dma.example


def test_cache_honours_ttls_including_negative_answers(nameserver: str) -> None:
    clock = Clock()
    resolver = Resolver([nameserver], clock=clock)
    for _ in range(3):
        resolver.session().lookup("short.example", "A")
        resolver.session().lookup("nxdomain.example", "A")
    assert resolver.queries == 2  # one each, then from the cache
    clock.now += 6  # past short.example's TTL of 5 s, within the SOA's negative TTL of 60 s
    resolver.session().lookup("short.example", "A")
    resolver.session().lookup("nxdomain.example", "A")
    assert resolver.queries == 3
    clock.now += 60
    resolver.session().lookup("nxdomain.example", "A")
    assert resolver.queries == 4


def test_cache_is_bounded() -> None:
    resolver = Resolver(["127.0.0.1:1"], cache_size=100)
    from relaywarden.dns import Answer

    for n in range(250):
        resolver.cache.put((f"n{n}.example.", "A"), Answer(f"n{n}", "A"), 60)
    assert len(resolver.cache) == 100
    assert resolver.cache.get(("n249.example.", "A")) is not None


def test_silent_nameserver_is_a_dns_error(nameserver: str) -> None:
    session = Resolver([nameserver], timeout=0.5, budget=3.0).session()
    with pytest.raises(DnsError):
        session.lookup("www.slow.example", "A")
    assert session.spent > 0  # the time waited counts against the message's budget


def test_budget_spent_stops_all_further_lookups(nameserver: str) -> None:
    session = Resolver([nameserver], timeout=0.5, budget=0.8).session()
    with pytest.raises(DnsError):
        session.lookup("a.slow.example", "A")
    with pytest.raises(DnsError):
        session.lookup("b.slow.example", "A")  # at most the remaining 0.3 s
    with pytest.raises(DnsBudgetExhausted):
        session.lookup("shop.example", "A")  # even a cached or fast answer: budget gone


def test_lookups_per_message_are_capped(nameserver: str) -> None:
    resolver = Resolver([nameserver], max_lookups=5)
    session = resolver.session()
    for _ in range(5):
        session.lookup("shop.example", "A")
    with pytest.raises(DnsBudgetExhausted):
        session.lookup("shop.example", "A")
    resolver.session().lookup("shop.example", "A")  # the next message has its own cap


def test_spf_through_our_resolver_keeps_rfc7208_limits(nameserver: str) -> None:
    resolver = Resolver([nameserver])
    assert spf_result(resolver.session(), "192.0.2.10", "shop.example") == "pass"
    assert spf_result(resolver.session(), "192.0.2.10", "paypal.com") == "fail"
    assert spf_result(resolver.session(), "198.51.100.7", "paypal.com") == "pass"
    assert spf_result(resolver.session(), "192.0.2.10", "nxdomain.example") == "none"
    assert spf_result(resolver.session(), "192.0.2.10", "loop.example") == "permerror"
    assert spf_result(resolver.session(), "192.0.2.10", "voids.example") == "permerror"


def test_spf_timeout_is_a_dns_error_not_an_spf_result(nameserver: str) -> None:
    session = Resolver([nameserver], timeout=0.5).session()
    with pytest.raises(DnsError):
        spf_result(session, "192.0.2.10", "slow.example")


def test_spellings_of_one_name_share_one_cache_entry(nameserver: str) -> None:
    """The plain-name fast path and the IDNA path key the cache alike: case, a
    trailing dot and a U-label spelling are one name, asked once."""
    resolver = Resolver([nameserver])
    for name in ("Shop.Example", "shop.example.", " shop.example "):
        assert [r.address for r in resolver.session().lookup(name, "A").records] == ["192.0.2.80"]
    assert resolver.queries == 1
    resolver.session().lookup("café.example", "A")
    resolver.session().lookup("xn--caf-dma.example", "A")
    resolver.session().lookup("CAFÉ.example.", "A")
    assert resolver.queries == 2
