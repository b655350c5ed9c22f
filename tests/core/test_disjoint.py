"""Disjoint sets: the union-find behind 1:1 batching groups and move sets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.disjoint import DisjointSets


def test_unseen_items_are_their_own_set_and_unions_chain() -> None:
    sets: DisjointSets[str] = DisjointSets()
    assert sets.find("a") == "a" and sets.find("b") == "b"
    sets.union("a", "b")
    sets.union("c", "d")
    assert sets.find("b") == sets.find("a") == "a"
    assert sets.find("a") != sets.find("c")
    sets.union("d", "b")  # joins the two sets through members, not representatives
    assert len({sets.find(x) for x in "abcd"}) == 1


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=60))
def test_same_set_means_connected(links: list[tuple[int, int]]) -> None:
    sets: DisjointSets[int] = DisjointSets()
    for a, b in links:
        sets.union(a, b)
    # Reference: connectivity by repeated merging of plain sets.
    groups: list[set[int]] = []
    for a, b in links:
        touching = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    for g in groups:
        assert len({sets.find(x) for x in g}) == 1
    reps = [sets.find(next(iter(g))) for g in groups]
    assert len(set(reps)) == len(groups)
