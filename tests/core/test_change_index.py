"""syncd.core.change: the record index a pushed change is compared with. Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.change import Entry, RecordIndex

Fact = tuple[str, str]


def entry(*facts: Fact, devices: tuple[int, ...] = (1,)) -> Entry[Fact]:
    return Entry(frozenset(devices), tuple(facts))


def test_a_fact_two_records_give_leaves_only_with_the_second() -> None:
    index = RecordIndex.build({10: entry(("sw", "h")), 12: entry(("sw", "h"))})
    first = index.preview({10: entry(devices=())})  # cable 10 deleted
    assert first.empty
    index.commit(first)
    second = index.preview({12: entry(devices=())})
    assert second.left == {("sw", "h")} and not second.entered
    index.commit(second)
    assert index.facts() == set() and index.records == {}


def test_a_move_enters_the_new_end_and_leaves_the_old() -> None:
    index = RecordIndex.build({11: entry(("sw", "h2"))})
    delta = index.preview({11: entry(("sw", "h6"))})
    assert (delta.entered, delta.left) == ({("sw", "h6")}, {("sw", "h2")})
    assert index.facts() == {("sw", "h2")}  # preview changes nothing
    index.commit(delta)
    assert index.facts() == {("sw", "h6")}


def test_a_record_giving_the_same_fact_twice_counts_once() -> None:
    index = RecordIndex.build({1: entry(("a", "b"), ("a", "b"))})
    assert index.counts[("a", "b")] == 1
    assert index.preview({1: entry()}).left == {("a", "b")}


def test_records_of_devices_includes_records_without_facts() -> None:
    index = RecordIndex.build(
        {1: entry(("a", "b"), devices=(7, 8)), 2: entry(devices=(8, 9)), 3: entry(devices=(5,))}
    )
    assert index.records_of([8]) == {1, 2}
    assert index.records_of([]) == set()


records = st.dictionaries(
    st.integers(0, 6),
    st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("xyz")), max_size=3),
    max_size=5,
)


@given(records, st.lists(records, max_size=6))
def test_any_sequence_of_changes_keeps_the_index_equal_to_its_records(
    start: dict[int, list[Fact]], changes: list[dict[int, list[Fact]]]
) -> None:
    index = RecordIndex.build({r: entry(*f) for r, f in start.items()})
    truth = {r: set(f) for r, f in start.items()}
    for change in changes:
        before = set().union(*truth.values()) if truth else set()
        delta = index.preview({r: entry(*f) for r, f in change.items()})
        truth.update({r: set(f) for r, f in change.items()})
        after = set().union(*truth.values()) if truth else set()
        assert delta.entered == after - before
        assert delta.left == before - after
        index.commit(delta)
        assert index.facts() == after
        assert all(n > 0 for n in index.counts.values())
