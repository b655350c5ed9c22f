"""Desired state versus known state: the level-triggered heart of syncd. Pure.

Desired is what the source says now; known is what syncd knows to be in the
CMDB. Every cycle recomputes the whole difference, so a missed event or a crash
never leaves work undone: the next cycle sees it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterator, Set
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


@dataclass(frozen=True, slots=True)
class Sides:
    """A known set built beside a desired set (:func:`known_beside`), with both sides of
    their difference found on the way, so the diff need not pass over a million pairs
    again. Valid for those very sets only, while their sizes are unchanged."""

    desired: Set[PairKey]
    known: set[PairKey]
    missing: frozenset[PairKey]
    """``desired - known``"""
    extra: frozenset[PairKey]
    """``known - desired``"""
    sizes: tuple[int, int]

    def valid_for(self, desired: Set[PairKey], known: Set[PairKey]) -> bool:
        return (
            desired is self.desired
            and known is self.known
            and (len(desired), len(known)) == self.sizes
        )


def diff(
    desired: Set[PairKey],
    known: Set[PairKey],
    held_back: Collection[PairKey] = (),
    sides: Sides | None = None,
) -> Diff:
    """Split desired vs known into what to create, what waits, and what is gone.

    ``sides``, when found for these very sets, gives both differences without a pass.
    """
    if sides is not None and sides.valid_for(desired, known):
        missing: Set[PairKey] = sides.missing
        absent: Set[PairKey] = sides.extra
    else:
        missing = desired - known
        # |known - desired| = |known| - |desired ∩ known|; skip the set pass when that is
        # 0, the steady state of a million-pair relation.
        gone = len(known) - (len(desired) - len(missing))
        absent = known - desired if gone else frozenset()
    if held_back:
        held = {key for key in held_back if key in missing}
        to_create = missing - held
    else:
        held = set()
        to_create = missing
    return Diff(frozenset(to_create), frozenset(held), frozenset(absent))


def known_beside(desired: Set[PairKey], chunks: Callable[[], Iterator[list[PairKey]]]) -> Sides:
    """The known pairs, read in chunks, as one set that holds ``desired``'s own key objects
    wherever the two agree (equal to ``set(chain(*chunks()))``), and both sides of the
    difference, in one pass over the chunks.

    Two sets of a million 128-bit ints cost ~150 MB; a known set that reuses the desired
    set's ints costs its table alone (~32 MB), and each chunk is dropped once matched.
    The pass strikes each chunk off a copy of ``desired``: what is left is missing. That
    copy is gone before the known set's table is made, so the peak holds one table.
    """
    unmatched = set(desired)
    strike = unmatched.discard  # never resizes (difference_update does, past 1/4 dummies:
    extra: set[PairKey] = set()  # a second table at once, and a heap left fragmented)
    for keys in chunks():
        before = len(unmatched)
        deque(map(strike, keys), maxlen=0)
        if before - len(unmatched) != len(keys):  # some known pair is not desired
            extra.update(set(keys).difference(desired))
    missing = frozenset(unmatched)
    del strike, unmatched  # the bound method holds the table too
    known = set(desired)
    known.difference_update(missing)
    known.update(extra)
    return Sides(desired, known, missing, frozenset(extra), (len(desired), len(known)))
