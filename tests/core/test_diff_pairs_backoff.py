"""The diff, pair packing and backoff timing."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.backoff import pair_next_attempt, request_delay
from syncd.core.details import IndexKind
from syncd.core.diff import diff
from syncd.core.pairs import MAX_ID, pack, unpack, unpack_all, unpack_list

ids = st.integers(0, MAX_ID)


@given(src=ids, dst=ids)
def test_pack_roundtrip(src: int, dst: int) -> None:
    assert unpack(pack(src, dst)) == (src, dst)


@given(st.lists(st.tuples(ids, ids), max_size=50))
def test_a_batch_unpacks_as_each_key_does(pairs: list[tuple[int, int]]) -> None:
    keys = [pack(s, d) for s, d in pairs]
    assert unpack_list(keys) == [unpack(k) for k in keys] == pairs == list(unpack_all(keys))


def test_pack_distinct_and_ordered() -> None:
    assert pack(1, 2) != pack(2, 1)
    assert list(unpack_all([pack(1, 2), pack(3, 4)])) == [(1, 2), (3, 4)]
    assert pack(1, 99) < pack(2, 0)


key_sets = st.sets(st.integers(0, 50))


@given(desired=key_sets, known=key_sets, held=key_sets)
def test_diff_partitions(desired: set[int], known: set[int], held: set[int]) -> None:
    d = diff(desired, known, held)
    assert d.to_create | d.held == desired - known
    assert not d.to_create & d.held
    assert d.held <= held
    assert d.absent == known - desired


def test_diff_no_op() -> None:
    d = diff({1, 2}, {1, 2})
    assert not d.to_create and not d.held and not d.absent


def test_request_delay_bounds() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        delay = request_delay(attempt, 0.5, 8.0, None, rng)
        assert 0 <= delay <= min(8.0, 0.5 * 2 ** (attempt - 1))
    assert request_delay(1, 0.5, 8.0, 3.0, rng) >= 3.0


def test_pair_next_attempt() -> None:
    assert pair_next_attempt(IndexKind.CONFLICT_1_N, 1, 100.0, 60, 3600) is None
    assert pair_next_attempt(IndexKind.CONFLICT_1_1, 5, 100.0, 60, 3600) is None
    assert pair_next_attempt(IndexKind.MISSING_TARGET, 1, 100.0, 60, 3600) == 160.0
    assert pair_next_attempt(IndexKind.MISSING_SOURCE, 3, 100.0, 60, 3600) == 340.0
    assert pair_next_attempt(IndexKind.MISSING_SOURCE, 30, 100.0, 60, 3600) == 3700.0
    assert pair_next_attempt(IndexKind.OTHER, 4, 100.0, 60, 3600) == 100.0


def test_a_detail_refused_alone_backs_off_like_a_missing_instance() -> None:
    # Found by bisection: each resend costs a bisection again, so it is not resent at once.
    assert pair_next_attempt(IndexKind.OTHER, 1, 100.0, 60, 3600) == 100.0
    assert pair_next_attempt(IndexKind.OTHER, 1, 100.0, 60, 3600, isolated=True) == 160.0
    assert pair_next_attempt(IndexKind.OTHER, 3, 100.0, 60, 3600, isolated=True) == 340.0
    assert pair_next_attempt(IndexKind.INVALID_ID, 1, 0.0, 60, 3600, isolated=True) is None
