"""A bar chart of decisions per hour, as numbers an SVG template can draw.

Drawn on the server so the page needs no script (and the CSP allows none).
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 480, 80


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    hours_ago: int


def bars(counts: list[int]) -> list[Bar]:
    if not counts:
        return []
    top = max(max(counts), 1)
    slot = WIDTH / len(counts)
    out = []
    for i, count in enumerate(counts):
        h = HEIGHT * count / top
        out.append(Bar(i * slot + 1, HEIGHT - h, slot - 2, h, count, len(counts) - 1 - i))
    return out
