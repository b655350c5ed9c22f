"""known_beside: the known set from chunks, sharing the desired set's key objects."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.diff import known_beside
from syncd.core.pairs import pack

_KEYS = st.sets(st.integers(0, 60).map(lambda i: pack(i // 8, i % 8)), max_size=40)


@given(desired=_KEYS, known=_KEYS, size=st.integers(1, 7))
def test_equals_the_union_of_the_chunks(desired: set[int], known: set[int], size: int) -> None:
    ordered = sorted(known)
    reads = []

    def chunks() -> Iterator[list[int]]:
        reads.append(1)
        return iter([ordered[i : i + size] for i in range(0, len(ordered), size)])

    assert known_beside(desired, chunks) == known
    # One read of the state when every desired pair is known; two otherwise.
    assert len(reads) == (1 if desired <= known else 2)


def test_shares_the_desired_key_objects() -> None:
    desired = {pack(1, n) for n in range(1000)}
    copies = [int(str(k)) for k in sorted(desired)]  # equal ints, other objects
    known = known_beside(desired, lambda: iter([copies[:500], [*copies[500:], pack(9, 9)]]))
    assert known == desired | {pack(9, 9)}
    by_value = {k: k for k in desired}
    assert all(by_value[k] is k for k in known if k in desired)


def test_ids_of_both_sides() -> None:
    from syncd.core.pairs import MAX_ID, ids_of, pack

    keys = [pack(1, 2), pack(MAX_ID, 0), pack(0, MAX_ID)]
    assert list(ids_of(keys, 0)) == [1, MAX_ID, 0]
    assert list(ids_of(keys, 1)) == [2, 0, MAX_ID]
