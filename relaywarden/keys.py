"""Redis key names.

Nothing a customer wrote is ever spliced into a key: identities are hashed, so a
SASL login full of `{}:` or newlines cannot break a key, collide with another or
steer a Cluster hash tag. The hash tag groups one customer's keys in one slot.
"""

from __future__ import annotations

import hashlib

from relaywarden.subjects import Subject


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def block(self, subject: Subject) -> str:
        return f"{self.prefix}:block:{{{digest(str(subject))}}}"

    @property
    def block_index(self) -> str:
        # A sorted set of subject -> expiry, so blocks can be listed without SCAN.
        return f"{self.prefix}:blocks"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"
