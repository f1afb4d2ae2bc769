"""Fakes for unit tests of the engine (the end-to-end suite uses real services)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from relaywarden.errors import StoreError
from relaywarden.store import BlockRecord, Outcome
from relaywarden.subjects import Subject


class FakeStore:
    def __init__(self) -> None:
        self.blocks: dict[str, BlockRecord] = {}
        self.events: list[dict[str, Any]] = []
        self.broken = False

    def block(self, subject: str, action: str = "reject", reason: str = "test") -> None:
        self.blocks[subject] = BlockRecord(subject, action, reason, "test", time.time(), None)

    def blocks_for(self, subjects: list[Subject]) -> list[BlockRecord]:
        if self.broken:
            raise StoreError("fake store is down")
        return [self.blocks[str(s)] for s in subjects if str(s) in self.blocks]

    def finish(self, outcome: Outcome, earlier: Sequence[dict[str, Any]] = ()) -> None:
        self.events.extend([*earlier, outcome.event])
