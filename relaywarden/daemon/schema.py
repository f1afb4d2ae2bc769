"""The layout version of what RelayWarden keeps in Redis, checked at start.

`{prefix}:schema` holds the version of the key layout the relays sharing this
Redis write. A milter refuses to start against a newer layout (an older
release must not misread or overwrite it); it writes its own version into an
empty Redis. An upgrade that changes the layout bumps SCHEMA_VERSION and says
in docs/operations.md what to do.
"""

from __future__ import annotations

import logging

import redis

from relaywarden.store import RedisStore

log = logging.getLogger("relaywarden.schema")

SCHEMA_VERSION = 1
EXIT_SCHEMA = 4


class SchemaMismatch(Exception):
    """Redis holds a layout this release cannot use: one line for the operator."""


def schema_key(store: RedisStore) -> str:
    return f"{store.keys.prefix}:schema"


def check(store: RedisStore, ours: int = SCHEMA_VERSION) -> int | None:
    """The layout version in force (written if Redis had none); None if Redis is
    unreachable now (the fail mode applies to mail, and the next start checks)."""
    key = schema_key(store)
    try:
        store.client.set(key, ours, nx=True)
        raw = store.client.get(key)
    except redis.RedisError as exc:
        log.warning("Redis schema version not checked (Redis unreachable): %s", exc)
        return None
    try:
        found = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SchemaMismatch(f"Redis key {key} holds {raw!r}, not a schema version") from None
    if found > ours:
        raise SchemaMismatch(
            f"Redis holds key layout version {found}, newer than this release's {ours}:"
            " upgrade this relay (docs/operations.md, Upgrades)"
        )
    if found < ours:
        raise SchemaMismatch(
            f"Redis holds key layout version {found}, older than this release's {ours}:"
            " follow docs/operations.md (Upgrades) before starting it"
        )
    return found
