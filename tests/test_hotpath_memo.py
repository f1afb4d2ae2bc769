"""What the hot path derives once and reuses must never go stale: the header
index of a message that grows, and values derived from one policy served for
another."""

from __future__ import annotations

from relaywarden.identity import Sender
from relaywarden.limits.model import plan_for, reads_for, scopes_for
from relaywarden.message import Message
from relaywarden.policy import policy_from_dict


def test_header_index_follows_headers_added_after_a_lookup() -> None:
    msg = Message()
    msg.add_header("From", b"<a@example.com>")
    assert [f.raw for f in msg.header_fields("from")] == [b"<a@example.com>"]
    msg.add_header("FROM", b"<b@example.com>")
    msg.add_header("Subject", b"hi")
    assert [f.raw for f in msg.header_fields("From")] == [b"<a@example.com>", b"<b@example.com>"]
    assert msg.header_values("subject") == ["hi"]
    msg.headers = msg.headers[:1]  # replaced outright (replays, tests): re-indexed
    assert len(msg.header_fields("from")) == 1 and msg.header_fields("Subject") == []


def test_header_fields_returns_a_list_the_caller_may_change() -> None:
    msg = Message()
    msg.add_header("To", b"<a@example.net>")
    msg.header_fields("To").clear()
    assert len(msg.header_fields("To")) == 1


def _policy(limit: str, override: str | None = None) -> object:
    data: dict[str, object] = {"plans": {"default": {"messages": [limit]}}}
    if override:
        data["limits"] = {
            "overrides": [{"subject": "vps:192.0.2.9", "limits": {"messages": [override]}}]
        }
    return policy_from_dict(data)


def test_each_policy_gets_its_own_plan_and_overrides() -> None:
    """A reload brings a new policy object: nothing derived from the old one is served."""
    sender = Sender(vps="192.0.2.9")
    first, second = _policy("10/1m"), _policy("20/1m", override="5/1m")
    assert [r.limit for r in plan_for(first, sender)[2].messages] == [10]  # type: ignore[arg-type]
    assert [r.limit for r in plan_for(second, sender)[2].messages] == [5]  # type: ignore[arg-type]
    other = Sender(vps="192.0.2.10")
    assert [r.limit for r in plan_for(second, other)[2].messages] == [20]  # type: ignore[arg-type]
    assert [r.limit for r in plan_for(first, sender)[2].messages] == [10]  # type: ignore[arg-type]


def test_reads_follow_the_scopes_limits() -> None:
    sender = Sender(vps="192.0.2.9")
    one, two = _policy("10/1m"), _policy("10/1h")
    read_one = reads_for(scopes_for(one, sender, "a@example.com")[0], one)  # type: ignore[arg-type]
    read_two = reads_for(scopes_for(two, sender, "a@example.com")[0], two)  # type: ignore[arg-type]
    assert ("m", 60.0) in read_one.counters and ("m", 3600.0) in read_two.counters
