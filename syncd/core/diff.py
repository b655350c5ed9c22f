"""Desired state versus known state: the level-triggered heart of syncd. Pure.

Desired is what the source says now; known is what syncd knows to be in the
CMDB. Every cycle recomputes the whole difference, so a missed event or a crash
never leaves work undone: the next cycle sees it again.
"""

from __future__ import annotations

from collections.abc import Collection, Set
from dataclasses import dataclass

from syncd.core.pairs import PairKey


@dataclass(frozen=True, slots=True)
class Diff:
    """What one relation needs this cycle."""

    to_create: frozenset[PairKey]
    """Desired, not known, not held back: send these."""
    held: frozenset[PairKey]
    """Desired, not known, but held back (per-pair backoff or a mapping conflict)."""
    absent: frozenset[PairKey]
    """Known but no longer desired: candidates for pruning, never deleted by the diff."""


def diff(desired: Set[PairKey], known: Set[PairKey], held_back: Collection[PairKey] = ()) -> Diff:
    """Split desired vs known into what to create, what waits, and what is gone."""
    missing = desired - known
    if held_back:
        held = {key for key in held_back if key in missing}
        to_create = missing - held
    else:
        held = set()
        to_create = missing
    # |known - desired| = |known| - |desired ∩ known|; skip the set pass when that is 0,
    # the steady state of a million-pair relation.
    if len(known) - (len(desired) - len(missing)) == 0:
        absent: Set[PairKey] = frozenset()
    else:
        absent = known - desired
    return Diff(frozenset(to_create), frozenset(held), frozenset(absent))
