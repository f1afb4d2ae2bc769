"""Who sent it: inventory lookups from what the relay observed."""

from __future__ import annotations

import pytest

from relaywarden.identity import Inventory, identify, vps_key
from relaywarden.message import Message, normalise_ip
from relaywarden.policy import PolicyError, policy_from_dict

POLICY = policy_from_dict(
    {
        "plans": {"small": {"messages": ["5/1m"]}, "large": {"messages": ["500/1m"]}},
        "customers": [
            {
                "id": "cust-42",
                "plan": "small",
                "networks": ["203.0.113.0/24", "2001:db8:42::/64"],
                "sasl_users": ["alice"],
                "domains": ["Shop.Example."],
            },
            {"id": "cust-7", "plan": "large", "networks": ["203.0.113.7/32"]},
        ],
    }
)
INVENTORY = Inventory(POLICY.customers)


def sender_of(address: str, login: str = "", mail_from: str = "x@shop.example"):  # type: ignore[no-untyped-def]
    msg = Message(client_address=normalise_ip(address), sasl_user=login, mail_from=mail_from)
    return identify(msg, INVENTORY)


def test_longest_prefix_wins() -> None:
    assert sender_of("203.0.113.7").customer == "cust-7"
    assert sender_of("203.0.113.8").customer == "cust-42"


def test_verified_login_wins_over_address() -> None:
    s = sender_of("198.51.100.1", login="alice")
    assert (s.customer, s.plan, s.vps) == ("cust-42", "small", "198.51.100.1")
    assert s.owned_domains == frozenset({"shop.example"})


def test_unknown_vps_gets_default_plan() -> None:
    s = sender_of("198.51.100.1")
    assert (s.customer, s.plan, s.known) == (None, "default", False)


def test_ipv6_and_mapped_addresses() -> None:
    assert sender_of("2001:db8:42::abcd").customer == "cust-42"
    assert sender_of("2001:db8:42::abcd").vps == "2001:db8:42::/64"
    assert sender_of("::ffff:203.0.113.7").vps == "203.0.113.7"
    assert vps_key(normalise_ip("2001:db8:42:0:1::1"), 56) == "2001:db8:42::/56"


def test_duplicate_customer_and_bad_network_are_policy_errors() -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_dict(
            {"customers": [{"id": "a", "networks": ["300.1.1.1/32"]}, {"id": "a"}, {"id": "a"}]}
        )
    text = str(err.value)
    assert "customers[0].networks" in text and "not a network" in text
    with pytest.raises(PolicyError, match="listed twice"):
        policy_from_dict({"customers": [{"id": "a"}, {"id": "a"}]})


def test_customer_contact_is_validated_and_travels_with_the_sender() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict({"customers": [{"id": "c1", "contact": ["not an address"]}]})
    assert "contact" in str(caught.value)
    policy = policy_from_dict(
        {"customers": [{"id": "c1", "sasl_users": ["Bob"], "contact": ["IT@Shop.example"]}]}
    )
    sender = identify(
        Message(client_address=normalise_ip("198.51.100.3"), sasl_user="bob"),
        Inventory(policy.customers),
    )
    assert sender.customer == "c1" and sender.contact == ("IT@shop.example",)
