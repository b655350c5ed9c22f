"""Changes, not only additions: a desired pair that a known pair blocks. Pure.

Under a ``1:n`` model association a target instance has at most one source; under ``1:1``
either side has at most one partner. A desired pair that shares its constrained instance
with a known pair is refused by the CMDB while that pair stands. What syncd does depends
on the blocking pair:

- the source states it too: the source contradicts the model; held (``conflict_1_n`` /
  ``conflict_1_1``, the reasons the CMDB's refusal would get);
- a fact with an unresolved key could still mean it: held (``uncertain_blocker``): only a
  fact that resolves both ends replaces a pair;
- syncd did not create it (someone else did, or a resync found it): held
  (``foreign_blocker``) with the blocking pair named, unless ``replace_foreign`` is set;
- syncd created it and the source no longer states it: a **move**. The old pair is deleted
  and the new one created in the same cycle, all deletes of a set before its creates.

Moves that share a deleted pair (a ``1:1`` swap, a chain) form one set, taken whole or
not at all. Sets are taken in order until the per-cycle cap (a count and a fraction of
the relation) would be passed; the rest waits (``move_capped``). When the source looks
broken (failed, empty, shrank past ``max_shrink``) no move runs (``move_blocked``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field

from syncd.core.batching import Mapping as AssociationMapping
from syncd.core.disjoint import DisjointSets
from syncd.core.pairs import PairKey, unpack

SOURCE_CONFLICT = ("conflict_1_n", "conflict_1_1")
"""The reasons of a source that states both pairs: the CMDB's own conflict reasons."""
UNCERTAIN_BLOCKER = "uncertain_blocker"
FOREIGN_BLOCKER = "foreign_blocker"
MOVE_CAPPED = "move_capped"
MOVE_BLOCKED = "move_blocked"
MOVES_OFF = "moves_off"


@dataclass(frozen=True, slots=True)
class MoveGuards:
    enabled: bool = True
    max_count: int = 1000
    max_fraction: float = 0.5
    replace_foreign: bool = False

    def cap(self, known: int) -> int:
        """Moves allowed this cycle in a relation of ``known`` pairs (the fraction rounds up,
        so a small relation can move one pair)."""
        return max(0, min(self.max_count, math.ceil(known * self.max_fraction)))


@dataclass(frozen=True, slots=True)
class Move:
    """One desired pair and the known pairs deleted to make room for it."""

    create: PairKey
    replaces: tuple[PairKey, ...]


@dataclass(frozen=True, slots=True)
class MovePlan:
    free: frozenset[PairKey]
    """Creates nothing known blocks: sent as usual."""
    moves: list[Move] = field(default_factory=list)
    """Chosen this cycle, in order."""
    held: dict[PairKey, tuple[str, str]] = field(default_factory=dict)
    """Blocked creates not moved this cycle: key -> (reason, message)."""
    blockers: dict[PairKey, tuple[PairKey, ...]] = field(default_factory=dict)
    """Every blocked create (moved or held) -> the known pairs blocking it."""
    capped: int = 0
    """Moves left for later cycles by the cap."""
    blocked: str | None = None
    """Why no move runs this cycle (the source guard), if any were due."""

    @property
    def deletes(self) -> list[PairKey]:
        """The pairs the chosen moves delete, each once, in order."""
        return sorted({old for move in self.moves for old in move.replaces})


def find_blockers(
    creates: Iterable[PairKey], known: Set[PairKey], mapping: AssociationMapping
) -> dict[PairKey, tuple[PairKey, ...]]:
    """Each create that shares its constrained instance with a known pair -> those pairs.

    One pass over ``known``, only when the mapping constrains anything and there is
    something to create.
    """
    creates = list(creates)
    if mapping is AssociationMapping.N_N or not creates or not known:
        return {}
    one_one = mapping is AssociationMapping.ONE_ONE
    pairs = [unpack(c) for c in creates]
    dsts = {d for _, d in pairs}
    srcs = {s for s, _ in pairs} if one_one else set()
    by_dst: dict[int, list[PairKey]] = {}
    by_src: dict[int, list[PairKey]] = {}
    for key in known:
        s, d = unpack(key)
        if d in dsts:
            by_dst.setdefault(d, []).append(key)
        if s in srcs:
            by_src.setdefault(s, []).append(key)
    out: dict[PairKey, tuple[PairKey, ...]] = {}
    for create, (s, d) in zip(creates, pairs, strict=True):
        found = set(by_dst.get(d, ()))
        if one_one:
            found.update(by_src.get(s, ()))
        found.discard(create)
        if found:
            out[create] = tuple(sorted(found))
    return out


def name_pair(key: PairKey) -> str:
    src, dst = unpack(key)
    return f"{src}->{dst}"


def _names(keys: Iterable[PairKey]) -> str:
    return ", ".join(name_pair(k) for k in keys)


def _why_held(
    blockers: tuple[PairKey, ...],
    desired: Set[PairKey],
    owned: Set[PairKey],
    kept: Mapping[PairKey, str],
    guards: MoveGuards,
    mapping: AssociationMapping,
) -> tuple[str, str] | None:
    """Why a blocked create cannot move (reason, message), or None: it can."""
    stated = [b for b in blockers if b in desired]
    if stated:
        return (
            SOURCE_CONFLICT[mapping is AssociationMapping.ONE_ONE],
            f"the source also states {name_pair(stated[0])}, which the model's mapping "
            "allows only one of: fix the source",
        )
    unsure = [b for b in blockers if b in kept]
    if unsure:
        return (
            UNCERTAIN_BLOCKER,
            f"blocked by {name_pair(unsure[0])}, which a fact may still state: {kept[unsure[0]]}",
        )
    foreign = [b for b in blockers if b not in owned]
    if foreign and not guards.replace_foreign:
        return (
            FOREIGN_BLOCKER,
            f"blocked by {name_pair(foreign[0])}, which syncd did not create: delete it in "
            "the CMDB (the pair is then sent at once), or set relations.moves.replace_foreign",
        )
    if not guards.enabled:
        return (MOVES_OFF, f"blocked by {name_pair(blockers[0])}; relations.moves is off")
    return None


def plan_moves(
    creates: Set[PairKey],
    *,
    known: Set[PairKey],
    desired: Set[PairKey],
    mapping: AssociationMapping,
    owned: Callable[[], Set[PairKey]],
    kept: Mapping[PairKey, str],
    guards: MoveGuards,
    blocked: str | None = None,
) -> MovePlan:
    """Split the creates into free ones, moves to run now, and blocked ones held.

    ``owned`` is asked only when some create is blocked (it reads the whole relation).
    ``kept`` are known pairs kept for uncertainty (:mod:`syncd.core.uncertain`).
    """
    blockers = find_blockers(creates, known, mapping)
    if not blockers:
        return MovePlan(frozenset(creates))
    mine = owned()
    held: dict[PairKey, tuple[str, str]] = {}
    candidates: list[Move] = []
    for create in sorted(blockers):
        why = _why_held(blockers[create], desired, mine, kept, guards, mapping)
        if why is None:
            candidates.append(Move(create, blockers[create]))
        else:
            held[create] = why
    free = frozenset(creates - blockers.keys())
    if candidates and blocked is not None:
        for move in candidates:
            held[move.create] = (
                MOVE_BLOCKED,
                f"would replace {_names(move.replaces)}; no moves this cycle: {blocked}",
            )
        return MovePlan(free, [], held, blockers, 0, blocked)
    chosen, capped = _take_sets(candidates, guards.cap(len(known)))
    for move in capped:
        held[move.create] = (
            MOVE_CAPPED,
            f"would replace {_names(move.replaces)}; the per-cycle move cap "
            f"({guards.cap(len(known))}) is reached: moved in a later cycle",
        )
    return MovePlan(free, chosen, held, blockers, len(capped), None)


def move_sets(moves: list[Move]) -> list[list[Move]]:
    """Moves that share a replaced pair, grouped (a swap or a chain is one set), in order."""
    olds = [old for move in moves for old in move.replaces]
    if len(olds) == len(moves) == len(set(olds)):
        # The usual 1:n re-cabling: each move replaces one pair no other move replaces.
        return [[move] for move in sorted(moves, key=lambda m: m.create)]
    sets: DisjointSets[PairKey] = DisjointSets()
    for move in moves:
        for old in move.replaces:
            sets.union(move.replaces[0], old)
    groups: dict[PairKey, list[Move]] = {}
    for move in moves:
        groups.setdefault(sets.find(move.replaces[0]), []).append(move)
    return sorted(groups.values(), key=lambda g: g[0].create)


def _take_sets(moves: list[Move], cap: int) -> tuple[list[Move], list[Move]]:
    """Whole sets, in order, each taken if it still fits within ``cap``; the rest wait
    (a set larger than the cap on its own waits until the cap is raised)."""
    if len(moves) <= cap:
        return moves, []
    chosen: list[Move] = []
    left: list[Move] = []
    for group in move_sets(moves):
        if len(chosen) + len(group) <= cap:
            chosen.extend(group)
        else:
            left.extend(group)
    return chosen, left
