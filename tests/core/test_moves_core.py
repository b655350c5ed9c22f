"""Moves decided in the pure core: who blocks a create, what moves, what is held and why."""

from __future__ import annotations

from collections.abc import Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.batching import Mapping
from syncd.core.moves import (
    FOREIGN_BLOCKER,
    MOVE_BLOCKED,
    MOVE_CAPPED,
    MOVES_OFF,
    SOURCE_CONFLICT,
    UNCERTAIN_BLOCKER,
    MoveGuards,
    MovePlan,
    find_blockers,
    plan_moves,
)
from syncd.core.pairs import PairKey, pack, unpack
from syncd.core.plan import MoveInputs, PruneInputs, plan
from syncd.core.prune import PruneGuards

P = pack
ALL = MoveGuards(max_fraction=1.0)


def keys(*pairs: tuple[int, int]) -> set[PairKey]:
    return {P(s, d) for s, d in pairs}


def moves_of(
    desired: set[PairKey],
    known: set[PairKey],
    mapping: Mapping = Mapping.ONE_N,
    owned: Set[PairKey] | None = None,
    kept: dict[PairKey, str] | None = None,
    guards: MoveGuards = ALL,
    blocked: str | None = None,
) -> MovePlan:
    return plan_moves(
        desired - known,
        known=known,
        desired=desired,
        mapping=mapping,
        owned=lambda: known if owned is None else owned,
        kept=kept or {},
        guards=guards,
        blocked=blocked,
    )


def test_blockers_follow_the_mapping() -> None:
    known = keys((1, 101), (2, 102))
    # n:n constrains nothing.
    assert find_blockers(keys((3, 101)), known, Mapping.N_N) == {}
    # 1:n: a target has one source; the source side is free.
    assert find_blockers(keys((3, 101), (1, 103)), known, Mapping.ONE_N) == {
        P(3, 101): (P(1, 101),)
    }
    # 1:1: either side; both blockers of a swap are named.
    assert find_blockers(keys((1, 102)), known, Mapping.ONE_ONE) == {
        P(1, 102): (P(1, 101), P(2, 102))
    }
    # A pair never blocks itself; nothing known, nothing blocked.
    assert find_blockers(keys((1, 101)), known, Mapping.ONE_ONE) == {}
    assert find_blockers(keys((1, 101)), set(), Mapping.ONE_ONE) == {}


def test_the_issue_scenario_moves_both_hosts() -> None:
    """Source 1,101 / 1,102 / 2,103 synced, then 2,101 / 1,102 / 3,103 (1:n)."""
    known = keys((1, 101), (1, 102), (2, 103))
    desired = keys((2, 101), (1, 102), (3, 103))
    mp = moves_of(desired, known)
    assert [(m.create, m.replaces) for m in mp.moves] == [
        (P(2, 101), (P(1, 101),)),
        (P(3, 103), (P(2, 103),)),
    ]
    assert mp.deletes == [P(1, 101), P(2, 103)]
    assert mp.free == frozenset() and mp.held == {}


def test_a_free_create_is_not_a_move_and_owned_is_not_read() -> None:
    def never() -> set[PairKey]:
        raise AssertionError("owned read without a blocked create")

    mp = plan_moves(
        keys((1, 104)),
        known=keys((1, 101)),
        desired=keys((1, 101), (1, 104)),
        mapping=Mapping.ONE_N,
        owned=never,
        kept={},
        guards=MoveGuards(),
    )
    assert mp.free == frozenset(keys((1, 104))) and not mp.moves


@pytest.mark.parametrize(
    ("owned", "kept", "guards", "desired_extra", "reason"),
    [
        (set(), {}, MoveGuards(), set(), FOREIGN_BLOCKER),
        ({P(1, 101)}, {P(1, 101): "target key 'x'"}, MoveGuards(), set(), UNCERTAIN_BLOCKER),
        ({P(1, 101)}, {}, MoveGuards(), {P(1, 101)}, SOURCE_CONFLICT[0]),
        ({P(1, 101)}, {}, MoveGuards(enabled=False), set(), MOVES_OFF),
    ],
)
def test_what_is_held_and_why(
    owned: set[PairKey],
    kept: dict[PairKey, str],
    guards: MoveGuards,
    desired_extra: set[PairKey],
    reason: str,
) -> None:
    known = keys((1, 101))
    desired = keys((2, 101)) | desired_extra
    mp = moves_of(desired, known, owned=owned, kept=kept, guards=guards)
    assert not mp.moves and not mp.deletes
    assert mp.held[P(2, 101)][0] == reason
    assert "1->101" in mp.held[P(2, 101)][1]  # the blocking pair is named
    assert mp.blockers[P(2, 101)] == (P(1, 101),)


def test_foreign_blocker_message_says_what_to_do_and_opt_in_replaces_it() -> None:
    known = keys((1, 101))
    held = moves_of(keys((2, 101)), known, owned=set())
    assert "delete it in the CMDB" in held.held[P(2, 101)][1]
    assert "replace_foreign" in held.held[P(2, 101)][1]
    moved = moves_of(keys((2, 101)), known, owned=set(), guards=MoveGuards(replace_foreign=True))
    assert moved.deletes == [P(1, 101)]


def test_one_one_swap_is_one_set_deletes_before_creates() -> None:
    known = keys((1, 101), (2, 102))
    desired = keys((1, 102), (2, 101))
    mp = moves_of(desired, known, Mapping.ONE_ONE)
    assert {m.create for m in mp.moves} == desired
    assert mp.deletes == sorted(known)
    # A cap of one cannot take half of the swap: the whole set waits.
    capped = moves_of(desired, known, Mapping.ONE_ONE, guards=MoveGuards(max_count=1))
    assert not capped.moves and capped.capped == 2
    assert {r for r, _ in capped.held.values()} == {MOVE_CAPPED}


def test_caps_count_and_fraction() -> None:
    known = {P(1, d) for d in range(100, 110)}
    desired = {P(2, d) for d in range(100, 110)}
    by_count = moves_of(desired, known, guards=MoveGuards(max_count=3, max_fraction=1.0))
    assert len(by_count.moves) == 3 and by_count.capped == 7
    # The fraction rounds up: 10 pairs x 0.25 -> 3 moves.
    by_fraction = moves_of(desired, known, guards=MoveGuards(max_count=100, max_fraction=0.25))
    assert len(by_fraction.moves) == 3 and by_fraction.capped == 7
    # The oldest keys first, deterministic.
    assert [m.create for m in by_fraction.moves] == sorted(desired)[:3]


def test_a_guard_blocks_every_move() -> None:
    mp = moves_of(keys((2, 101)), keys((1, 101)), blocked="the source failed this cycle")
    assert not mp.moves and mp.blocked == "the source failed this cycle"
    assert mp.held[P(2, 101)] == (
        MOVE_BLOCKED,
        "would replace 1->101; no moves this cycle: the source failed this cycle",
    )


def test_plan_releases_a_stored_conflict_hold_once_its_blocker_is_gone() -> None:
    held = {P(2, 101): ("conflict_1_n", "The relationship is 1:n ...")}
    args = {"mapping": Mapping.ONE_N, "batch_size": 200, "now": 0.0}
    # The blocker is someone else's and still there: held, naming it.
    blocked = plan(
        "r",
        keys((2, 101)),
        keys((1, 101)),
        held,
        moves=MoveInputs(MoveGuards(), lambda: set()),
        **args,  # type: ignore[arg-type]
    )
    assert blocked.to_create == [] and blocked.held[P(2, 101)][0] == FOREIGN_BLOCKER
    # Gone from the known state (deleted by anyone, or a relist): sent.
    free = plan(
        "r",
        keys((2, 101)),
        set(),
        held,
        moves=MoveInputs(MoveGuards(), set),
        **args,  # type: ignore[arg-type]
    )
    assert free.to_create == [P(2, 101)] and free.held == {}
    # Other holds (a missing instance in backoff) still hold.
    other = plan("r", keys((2, 101)), set(), {P(2, 101): ("missing_target", "x")}, **args)  # type: ignore[arg-type]
    assert other.to_create == [] and P(2, 101) in other.held


def test_plan_does_not_prune_what_a_move_deletes() -> None:
    known = keys((1, 101), (1, 102))
    desired = keys((2, 101))
    prune = PruneInputs(
        guards=PruneGuards(grace_seconds=0, grace_cycles=1, max_fraction=1.0),
        owned=known,
        absent_before={},
        last_good_desired=None,
    )
    decided = plan(
        "r",
        desired,
        known,
        {},
        mapping=Mapping.ONE_N,
        batch_size=200,
        now=0.0,
        prune=prune,
        moves=MoveInputs(MoveGuards(), lambda: known),
    )
    assert [m.create for m in decided.moves] == [P(2, 101)]
    assert decided.prune.delete == [P(1, 102)]  # 1->101 goes by the move, not twice
    assert decided.to_create == [P(2, 101)]


pair = st.tuples(st.integers(1, 4), st.integers(101, 104)).map(lambda t: P(*t))


@settings(max_examples=300, deadline=None)
@given(
    known=st.sets(pair, max_size=8),
    desired=st.sets(pair, max_size=8),
    owned_mask=st.sets(pair, max_size=8),
    kept_mask=st.sets(pair, max_size=4),
    mapping=st.sampled_from([Mapping.ONE_N, Mapping.ONE_ONE]),
    replace_foreign=st.booleans(),
)
def test_moves_never_delete_what_they_must_not(
    known: set[PairKey],
    desired: set[PairKey],
    owned_mask: set[PairKey],
    kept_mask: set[PairKey],
    mapping: Mapping,
    replace_foreign: bool,
) -> None:
    """For any state: a move deletes only known pairs the source dropped, no kept pair, a
    foreign one only with the opt-in, and after it each moved create is unblocked."""
    owned = known & owned_mask
    kept = {k: "k" for k in (known - desired) & kept_mask}
    mp = moves_of(
        desired,
        known,
        mapping,
        owned=owned,
        kept=kept,
        guards=MoveGuards(max_fraction=1.0, replace_foreign=replace_foreign),
    )
    deletes = set(mp.deletes)
    assert deletes <= known - desired
    assert not deletes & kept.keys()
    if not replace_foreign:
        assert deletes <= owned
    after = known - deletes
    for move in mp.moves:
        assert not find_blockers([move.create], after, mapping)
    # Every create is free, moved or held: none lost, none twice.
    moved = {m.create for m in mp.moves}
    assert mp.free | moved | mp.held.keys() == desired - known
    assert not (mp.free & moved) and not (moved & mp.held.keys())
    assert all(not find_blockers([c], known, mapping) for c in mp.free)
    for create, (_, message) in mp.held.items():
        assert any(f"{s}->{d}" in message for s, d in map(unpack, mp.blockers[create]))


def test_move_sets_group_shared_deletes_and_keep_singletons_apart() -> None:
    from syncd.core.moves import Move, move_sets

    a = Move(P(1, 102), (P(1, 101), P(2, 102)))
    b = Move(P(2, 101), (P(1, 101), P(2, 102)))
    c = Move(P(3, 105), (P(4, 105),))
    d = Move(P(5, 106), (P(6, 106),))
    assert move_sets([c, a, b]) == [[a, b], [c]]
    assert move_sets([d, c]) == [[c], [d]]  # the fast path: one pair each, none shared
