"""known_beside: the known set from chunks, sharing the desired set's key objects, and the
difference found on the way (which the diff then takes instead of a pass of its own)."""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.diff import diff, known_beside
from syncd.core.pairs import pack

_KEYS = st.sets(st.integers(0, 60).map(lambda i: pack(i // 8, i % 8)), max_size=40)


@given(desired=_KEYS, known=_KEYS, size=st.integers(1, 7))
def test_equals_the_union_of_the_chunks(desired: set[int], known: set[int], size: int) -> None:
    ordered = sorted(known)
    reads = []

    def chunks() -> Iterator[list[int]]:
        reads.append(1)
        return iter([ordered[i : i + size] for i in range(0, len(ordered), size)])

    sides = known_beside(desired, chunks)
    assert sides.known == known
    assert sides.missing == desired - known
    assert sides.extra == known - desired
    assert len(reads) == 1  # one read of the state, whatever is missing
    assert sides.valid_for(desired, sides.known)


@given(desired=_KEYS, known=_KEYS, held=_KEYS, size=st.integers(1, 7))
def test_diff_with_sides_equals_diff_without(
    desired: set[int], known: set[int], held: set[int], size: int
) -> None:
    ordered = sorted(known)
    sides = known_beside(
        desired, lambda: iter([ordered[i : i + size] for i in range(0, len(ordered), size)])
    )
    assert diff(desired, sides.known, held, sides) == diff(desired, set(known), held)


def test_sides_of_other_or_changed_sets_are_not_used() -> None:
    desired = {pack(1, n) for n in range(10)}
    sides = known_beside(desired, lambda: iter([[pack(1, n) for n in range(5, 12)]]))
    mirror = sides.known
    assert diff(desired, mirror, (), sides).to_create == {pack(1, n) for n in range(5)}
    # Another set equal in value is not the one the sides were found for.
    assert not sides.valid_for(set(desired), mirror)
    # The mirror changed since (an answer recorded): the diff passes over the sets again.
    mirror.add(pack(1, 0))
    changed = diff(desired, mirror, (), sides)
    assert changed.to_create == {pack(1, n) for n in range(1, 5)}
    assert changed.absent == {pack(1, 10), pack(1, 11)}


def test_shares_the_desired_key_objects() -> None:
    desired = {pack(1, n) for n in range(1000)}
    copies = [int(str(k)) for k in sorted(desired)]  # equal ints, other objects
    known = known_beside(desired, lambda: iter([copies[:500], [*copies[500:], pack(9, 9)]])).known
    assert known == desired | {pack(9, 9)}
    by_value = {k: k for k in desired}
    assert all(by_value[k] is k for k in known if k in desired)


def test_shares_the_desired_key_objects_when_some_are_missing() -> None:
    desired = {pack(1, n) for n in range(1000)}
    copies = [int(str(k)) for k in sorted(desired)][:900]
    sides = known_beside(desired, lambda: iter([copies[:450], [*copies[450:], pack(9, 9)]]))
    assert sides.missing == {pack(1, n) for n in range(900, 1000)}
    assert sides.known == set(copies) | {pack(9, 9)}
    by_value = {k: k for k in desired}
    assert all(by_value[k] is k for k in sides.known if k in desired)


def test_ids_of_both_sides() -> None:
    from syncd.core.pairs import MAX_ID, ids_of, pack

    keys = [pack(1, 2), pack(MAX_ID, 0), pack(0, MAX_ID)]
    assert list(ids_of(keys, 0)) == [1, MAX_ID, 0]
    assert list(ids_of(keys, 1)) == [2, 0, MAX_ID]


def test_holds_one_table_at_a_time() -> None:
    """The copy the pass strikes from is gone before the known set's table is made: a
    million-pair no-op then peaks at one table more than the desired set, not two."""
    desired = {pack(1 + n // 100, n % 100) for n in range(200_000)}
    copies = [int(str(k)) for k in sorted(desired)]
    table = sys.getsizeof(set(desired))
    for missing in (0, 2_000):  # the no-op, and 1% missing
        state = copies[missing:]
        pieces = [state[i : i + 5_000] for i in range(0, len(state), 5_000)]
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            sides = known_beside(desired, pieces.__iter__)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert len(sides.missing) == missing
        assert sides.known == set(state)
        assert peak < 1.5 * table, (peak, table)
