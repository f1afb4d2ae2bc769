"""Blocks and the audit trail against a real redis-server."""

from __future__ import annotations

import pytest

from relaywarden import audit, blocking
from relaywarden.store import RedisStore
from relaywarden.subjects import parse_subject


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    return redis_store


def test_block_is_found_audited_and_lifted(store: RedisStore) -> None:
    subject = parse_subject("user:alice")
    blocking.block(store, subject, actor="eve", reason="phishing kit", duration=3600)
    found = store.blocks_for([subject, parse_subject("vps:203.0.113.7")])
    assert [b.subject for b in found] == ["user:alice"]
    assert found[0].set_by == "eve" and found[0].until is not None
    assert [b.subject for b in store.list_blocks()] == ["user:alice"]

    assert blocking.unblock(store, subject, actor="frank", reason="cleaned up")
    assert store.blocks_for([subject]) == []
    assert not blocking.unblock(store, subject, actor="frank")

    trail = audit.read(store)
    assert [(e.actor, e.action, e.target) for e in trail] == [
        ("frank", "unblock", "user:alice"),
        ("frank", "unblock", "user:alice"),
        ("eve", "block", "user:alice"),
    ]
    assert trail[2].reason == "phishing kit"


def test_expired_block_is_not_active(store: RedisStore) -> None:
    subject = parse_subject("sender:x@shop.example")
    blocking.block(store, subject, actor="eve", reason="r", duration=10, now=1000.0)
    assert store.blocks_for([subject]) == []
    assert store.list_blocks() == []


def test_hostile_subject_values_stay_inside_their_key(store: RedisStore) -> None:
    evil = parse_subject("user:{a}:b\\x")
    plain = parse_subject("user:a")
    blocking.block(store, evil, actor="eve", reason="r", duration=None)
    assert store.blocks_for([plain]) == []
    assert [b.subject for b in store.blocks_for([evil])] == [str(evil)]
    assert all(b"{a}" not in k for k in store.client.keys("*"))


def test_invalid_block_arguments(store: RedisStore) -> None:
    with pytest.raises(ValueError):
        blocking.block(store, parse_subject("user:a"), actor="e", reason="r", duration=0)
    with pytest.raises(ValueError):
        blocking.block(
            store, parse_subject("user:a"), actor="e", reason="r", duration=5, action="x"
        )
