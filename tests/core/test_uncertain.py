"""Never prune on uncertainty: the rule for one pair, for many, and in the plan (property)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.batching import Mapping
from syncd.core.moves import MoveGuards
from syncd.core.pairs import PairKey, pack
from syncd.core.plan import MoveInputs, PruneInputs, plan
from syncd.core.prune import PruneGuards
from syncd.core.uncertain import (
    CERTAIN,
    OpenSides,
    Uncertainty,
    certainly_absent,
    keeping_reason,
    kept_for_uncertainty,
)

P = pack


def test_one_side_unresolved_keeps_that_side_only() -> None:
    sides = OpenSides()
    sides.add("sw-1", "10.9.9.10", 1, None, "t.csv:2")  # the host was readdressed
    sides.add("sw-1-renamed", "10.0.0.11", None, 1011, "t.csv:3")  # the switch was renamed
    u = sides.uncertainty()
    assert keeping_reason(P(1, 1099), u) == "target key '10.9.9.10' did not resolve (t.csv:2)"
    assert keeping_reason(P(7, 1011), u) == "source key 'sw-1-renamed' did not resolve (t.csv:3)"
    # The other side of either fact, and every other pair, is certainly absent.
    assert keeping_reason(P(2, 1099), u) is None
    assert certainly_absent(P(2, 1012), set(), u)
    assert not certainly_absent(P(1, 1012), set(), u)
    assert not certainly_absent(P(2, 1012), {P(2, 1012)}, u)  # stated: never absent


def test_both_sides_unresolved_keeps_everything() -> None:
    sides = OpenSides()
    sides.add("ghost", "nowhere", None, None, "t.csv:9")
    u = sides.uncertainty()
    assert u.everything is not None and "'ghost'" in u.everything
    assert kept_for_uncertainty([P(1, 1), P(2, 2)], u) == {
        P(1, 1): u.everything,
        P(2, 2): u.everything,
    }


def test_resolved_facts_leave_nothing_open() -> None:
    sides = OpenSides()
    sides.add("a", "b", 1, 2, "x")
    assert sides.uncertainty() is CERTAIN and not CERTAIN
    assert kept_for_uncertainty([P(1, 2)], CERTAIN) == {}
    assert certainly_absent(P(1, 2), set(), CERTAIN)


def test_merged_keeps_both_reads() -> None:
    a = Uncertainty({1: "a"}, {}, None)
    b = Uncertainty({}, {9: "b"}, "all")
    m = a.merged(b)
    assert m.by_source == {1: "a"} and m.by_target == {9: "b"} and m.everything == "all"
    assert a.merged(CERTAIN) is a and CERTAIN.merged(b) is b


NAMES = [f"sw-{i}" for i in range(4)]
HOSTS = [f"10.0.0.{i}" for i in range(5)]


@settings(max_examples=400, deadline=None)
@given(
    facts=st.sets(st.tuples(st.sampled_from(NAMES), st.sampled_from(HOSTS)), max_size=12),
    extra_known=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=6),
    hidden=st.sets(st.sampled_from(NAMES + HOSTS)),
    mapping=st.sampled_from(list(Mapping)),
)
def test_pruning_never_deletes_what_the_full_source_keeps(
    facts: set[tuple[str, str]],
    extra_known: set[tuple[int, int]],
    hidden: set[str],
    mapping: Mapping,
) -> None:
    """For any source and any subset of its keys made unresolvable, neither pruning nor a
    move deletes a pair the full source (every key resolvable) states."""
    ids = {name: i for i, name in enumerate(NAMES)} | {h: i for i, h in enumerate(HOSTS)}
    full = {P(ids[s], ids[d]) for s, d in facts}
    # Everything is known and owned: the full source's pairs and some it does not state.
    known = full | {P(s, d) for s, d in extra_known}
    sides = OpenSides()
    partial: set[PairKey] = set()
    for s, d in facts:
        src = None if s in hidden else ids[s]
        dst = None if d in hidden else ids[d]
        if src is not None and dst is not None:
            partial.add(P(src, dst))
        sides.add(s, d, src, dst, "t.csv")
    decided = plan(
        "r",
        partial,
        known,
        {},
        mapping=mapping,
        batch_size=200,
        now=1e9,
        prune=PruneInputs(
            guards=PruneGuards(0, 1, 10**6, 1.0, 1.0),
            owned=known,
            absent_before={},
            last_good_desired=None,
        ),
        moves=MoveInputs(MoveGuards(max_count=10**6, max_fraction=1.0), lambda: known),
        uncertainty=sides.uncertainty(),
    )
    deleted = set(decided.prune.delete) | {old for m in decided.moves for old in m.replaces}
    assert not deleted & full
    # What is kept is exactly what was not deleted among the absent, and each has a reason.
    assert all(decided.kept[k] for k in decided.kept)
    assert not deleted & decided.kept.keys()
