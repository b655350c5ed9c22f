"""Desired state versus known state: the level-triggered heart of syncd. Pure.

Desired is what the source says now; known is what syncd knows to be in the
CMDB. Every cycle recomputes the whole difference, so a missed event or a crash
never leaves work undone: the next cycle sees it again.
"""

from __future__ import annotations

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


def known_beside(
    desired: Set[PairKey], chunks: Callable[[], Iterator[list[PairKey]]]
) -> set[PairKey]:
    """The known pairs, read in chunks, as one set that holds ``desired``'s own key objects
    wherever the two agree. Equal to ``set(chain(*chunks()))``.

    Two sets of a million 128-bit ints cost ~150 MB; a known set that reuses the desired
    set's ints costs its table alone (~32 MB), and each chunk is dropped once matched.
    One pass when every desired pair is known (the steady state); otherwise a second
    pass over ``chunks()`` finds the desired pairs nothing matched.
    """
    extra: set[PairKey] = set()
    matched = 0
    contains = desired.__contains__
    for keys in chunks():
        hits = sum(map(contains, keys))
        matched += hits
        if hits != len(keys):  # some known pair is not desired
            extra.update(set(keys).difference(desired))
    known = set(desired)
    if matched != len(desired):
        unmatched = known  # the table is reused: what is left after the pass is missing
        for keys in chunks():
            unmatched.difference_update(keys)
        missing = set(unmatched)
        known = set(desired)
        known.difference_update(missing)
    known.update(extra)
    return known
