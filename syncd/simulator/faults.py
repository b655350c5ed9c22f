"""Seeded fault injection: the same seed and request order give the same faults.

Kinds: ``502`` and ``504`` are answered before the CMDB acts (safe to retry);
``504-after`` and ``drop`` are answered after it acted, the ambiguous cases a
client must resolve by retrying (pairs then come back "already exist") or re-reading.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

FAULT_KINDS: tuple[str, ...] = ("502", "504", "504-after", "drop")
BEFORE_ACTING = frozenset({"502", "504"})


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Validate kind names; raises ValueError naming the bad one."""
    out = tuple(kinds)
    for kind in out:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    return out


class FaultPlan:
    """Draws at most one fault per request from a private ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def draw(self, rate: float, kinds: tuple[str, ...], seed: int) -> str | None:
        """One decision per call; reseeds when the configured seed changed."""
        if seed != self.seed:
            self.seed = seed
            self._rng = random.Random(seed)
        if rate <= 0 or not kinds:
            return None
        if self._rng.random() >= rate:
            return None
        return self._rng.choice(kinds)
