"""Batching: size limits, determinism, and the mapping-safety invariant, exhaustively."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.batching import Mapping, plan_batches
from syncd.core.pairs import pack, unpack

pairs_st = st.sets(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=400)


def test_nn_chunks_sorted() -> None:
    keys = [pack(s, d) for s in range(5) for d in range(100)]
    plan = plan_batches(reversed(keys), 200)
    assert [len(b) for b in plan.batches] == [200, 200, 100]
    assert [k for b in plan.batches for k in b] == sorted(keys)
    assert plan.deferred == []


@pytest.mark.parametrize("size", [0, 201, -1])
def test_refuses_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="batch size"):
        plan_batches([pack(1, 2)], size)


def test_empty() -> None:
    assert plan_batches([], 200).batches == []


def test_mapping_parse() -> None:
    assert Mapping.parse("1:n") is Mapping.ONE_N
    assert Mapping.parse(" 1:1 ") is Mapping.ONE_ONE
    assert Mapping.parse(None) is Mapping.N_N
    assert Mapping.parse("n:n") is Mapping.N_N


def test_one_n_group_too_large_is_deferred() -> None:
    keys = [pack(s, 7) for s in range(250)]
    plan = plan_batches(keys, 200, Mapping.ONE_N)
    assert len(plan.batches) == 1 and len(plan.batches[0]) == 200
    assert len(plan.deferred) == 50


def _constrained(key: int, mapping: Mapping) -> set[tuple[int, int]]:
    src, dst = unpack(key)
    if mapping is Mapping.ONE_N:
        return {(1, dst)}
    return {(0, src), (1, dst)}


@settings(max_examples=300, deadline=None)
@given(pairs=pairs_st, size=st.integers(1, 200), mapping=st.sampled_from(list(Mapping)))
def test_invariants(pairs: set[tuple[int, int]], size: int, mapping: Mapping) -> None:
    keys = [pack(s, d) for s, d in pairs]
    plan = plan_batches(keys, size, mapping)
    sent = [k for b in plan.batches for k in b]
    # Every pair goes out exactly once or is deferred; nothing invented.
    assert sorted(sent + plan.deferred) == sorted(keys)
    assert len(set(sent)) == len(sent)
    assert all(1 <= len(b) <= size for b in plan.batches)
    if mapping is Mapping.N_N:
        assert plan.deferred == []
        return
    # No two batches (which may be in flight together) share a constrained instance.
    owner: dict[tuple[int, int], int] = {}
    for i, batch in enumerate(plan.batches):
        for key in batch:
            for node in _constrained(key, mapping):
                assert owner.setdefault(node, i) == i
    # Deferred pairs belong to a group (pairs linked through constrained instances)
    # of which some pair was sent: they wait only because the group outgrew a request.
    group = _components(keys, mapping)
    sent_groups = {group[k] for k in sent}
    for key in plan.deferred:
        assert group[key] in sent_groups


def _components(keys: list[int], mapping: Mapping) -> dict[int, int]:
    """Pair -> a group id, pairs linked when they share a constrained instance."""
    group = {k: k for k in keys}

    def find(k: int) -> int:
        while group[k] != k:
            k = group[k]
        return k

    by_node: dict[tuple[int, int], int] = {}
    for key in keys:
        for node in _constrained(key, mapping):
            other = by_node.setdefault(node, key)
            a, b = find(key), find(other)
            if a != b:
                group[b] = a
    return {k: find(k) for k in keys}


@settings(max_examples=100, deadline=None)
@given(pairs=pairs_st, mapping=st.sampled_from(list(Mapping)))
def test_deterministic(pairs: set[tuple[int, int]], mapping: Mapping) -> None:
    keys = [pack(s, d) for s, d in pairs]
    assert plan_batches(keys, 50, mapping) == plan_batches(list(reversed(keys)), 50, mapping)
