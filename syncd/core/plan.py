"""What one relation's cycle will do, decided from what was observed. Pure.

Everything a cycle decides before it writes anything: what to create (in
mapping-safe batches), what waits (held back, deferred), and what may be
deleted. ``syncd plan`` prints this; the daemon carries it out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from syncd.core.batching import Mapping as AssociationMapping
from syncd.core.batching import plan_batches
from syncd.core.diff import Sides, diff
from syncd.core.moves import Move, MoveGuards, MovePlan, plan_moves
from syncd.core.pairs import PairKey
from syncd.core.prune import PruneDecision, PruneGuards, decide_prune, source_guard, sources_guard
from syncd.core.uncertain import CERTAIN, Uncertainty, kept_for_uncertainty

CONFLICT_KINDS = frozenset({"conflict_1_1", "conflict_1_n"})
"""Stored holds the plan re-decides every cycle from the known blocking pair: held while
it stands, released the moment it is gone (deleted by syncd, seen deleted, relisted)."""

AbsentInfo = Mapping[PairKey, tuple[float, int]]
"""key -> (absent since, consecutive absent cycles)."""


class UnresolvedKey(NamedTuple):
    """A natural key that resolved to no instance (or to two), and where it came from."""

    side: str
    """source or target"""
    key: str
    origin: str
    """the record: ``topology.csv:12``, a NetBox cable URL"""
    source: str
    """the name of the relation's source that said it"""


class SourceStatus(NamedTuple):
    """What one of a relation's sources answered this cycle."""

    name: str
    type: str
    pairs: int | None
    """None: the source failed."""
    bad_records: int = 0
    unresolved: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PruneInputs:
    """What pruning needs from the known state (only for a relation with pruning on)."""

    guards: PruneGuards
    owned: Set[PairKey]
    """Pairs syncd created."""
    absent_before: AbsentInfo
    """Absence of owned pairs as recorded before this cycle."""
    last_good_desired: int | None
    source_sizes: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    """Several sources: each answering one's (pairs now, size pruning last accepted)."""
    failed_sources: Mapping[str, str] = field(default_factory=dict)
    """Several sources: each failed one's error."""


@dataclass(frozen=True, slots=True)
class MoveInputs:
    """What moves need beyond desired and known (for every relation, pruning on or off)."""

    guards: MoveGuards
    owned: Callable[[], Set[PairKey]]
    """Pairs syncd created; asked only when a create is blocked by a known pair."""
    blocked: str | None = None
    """The source guard's reason (failed, empty, shrank): no move runs this cycle."""


def relation_guard(
    desired: int,
    last_good: int | None,
    guards: PruneGuards,
    source_sizes: Mapping[str, tuple[int, int | None]] | None = None,
    failed_sources: Mapping[str, str] | None = None,
) -> str | None:
    """Why nothing may be deleted this cycle (failed, empty or shrunken source), or None."""
    return sources_guard(source_sizes or {}, failed_sources or {}, guards) or source_guard(
        desired, last_good, guards
    )


@dataclass
class RelationPlan:
    """What a cycle would do for one relation (``syncd plan`` prints it)."""

    relation: str
    desired: int
    known: int
    batches: list[list[PairKey]]
    deferred: list[PairKey]
    held: dict[PairKey, tuple[str, str]]
    absent: frozenset[PairKey]
    prune: PruneDecision
    bad_records: int = 0
    unresolved: list[UnresolvedKey] = field(default_factory=list)
    source_counts: dict[str, int] = field(default_factory=dict)
    sources: list[SourceStatus] = field(default_factory=list)
    owned_absent: frozenset[PairKey] = frozenset()
    """Owned pairs the source no longer has (their absence is counted on commit)."""
    moves: list[Move] = field(default_factory=list)
    """Moves to run this cycle: their deletes first, then their creates (in ``batches``)."""
    blockers: dict[PairKey, tuple[PairKey, ...]] = field(default_factory=dict)
    """Every create a known pair blocks (moved or held) -> the blocking pairs."""
    moves_capped: int = 0
    moves_blocked: str | None = None
    guard: str | None = None
    """Why nothing may be deleted (failed, empty or shrunken source): pruning and moves."""
    kept: dict[PairKey, str] = field(default_factory=dict)
    """Known pairs not in the source that a fact with an unresolved key could still mean:
    never pruned nor moved, each with the key that keeps it."""

    @property
    def to_create(self) -> list[PairKey]:
        return [k for batch in self.batches for k in batch]


def plan(
    relation: str,
    desired: Set[PairKey],
    known: Set[PairKey],
    held_back: Mapping[PairKey, tuple[str, str]],
    *,
    mapping: AssociationMapping,
    batch_size: int,
    now: float,
    prune: PruneInputs | None = None,
    moves: MoveInputs | None = None,
    uncertainty: Uncertainty = CERTAIN,
    sides: Sides | None = None,
) -> RelationPlan:
    """Diff desired against known, find moves, cut the creates into batches, decide the prune.

    Stored mapping-conflict holds are not taken as they are: whether a known pair still
    blocks each pair is decided here, every cycle (:mod:`syncd.core.moves`). ``sides``:
    the difference found while known was built beside desired (used only if it is theirs).
    """
    stored = {k: v for k, v in held_back.items() if v[0] not in CONFLICT_KINDS}
    result = diff(desired, known, stored.keys(), sides)
    kept = kept_for_uncertainty(result.absent, uncertainty)
    moved = MovePlan(result.to_create)
    if moves is not None:
        moved = plan_moves(
            result.to_create,
            known=known,
            desired=desired,
            mapping=mapping,
            owned=moves.owned,
            kept=kept,
            guards=moves.guards,
            blocked=moves.blocked,
        )
    creates = moved.free | {m.create for m in moved.moves} if moved.moves else moved.free
    batches = plan_batches(creates, batch_size, mapping)
    owned_absent: frozenset[PairKey] = frozenset()
    decision = PruneDecision()
    if prune is not None:
        owned_absent = frozenset(prune.owned & result.absent - kept.keys())
        decision = decide_prune(
            absent_after(prune.absent_before, owned_absent, now),
            known=len(known),
            now=now,
            guards=prune.guards,
            blocked=sources_guard(prune.source_sizes, prune.failed_sources, prune.guards)
            or source_guard(len(desired), prune.last_good_desired, prune.guards),
        )
        if moved.moves and decision.delete:
            replaced = set(moved.deletes)
            decision = replace(decision, delete=[k for k in decision.delete if k not in replaced])
    held = {k: stored[k] for k in result.held}
    held.update(moved.held)
    return RelationPlan(
        relation=relation,
        desired=len(desired),
        known=len(known),
        batches=batches.batches,
        deferred=batches.deferred,
        held=held,
        absent=result.absent,
        prune=decision,
        owned_absent=owned_absent,
        moves=moved.moves,
        blockers=moved.blockers,
        moves_capped=moved.capped,
        moves_blocked=moved.blocked,
        kept=kept,
    )


def absent_after(before: AbsentInfo, owned_absent: Set[PairKey], now: float) -> AbsentInfo:
    """Absence counted with this cycle: since stays, cycles grow by one; new ones start now."""
    out: dict[PairKey, tuple[float, int]] = {}
    for key in owned_absent:
        previous = before.get(key)
        out[key] = (now, 1) if previous is None else (previous[0], previous[1] + 1)
    return out
