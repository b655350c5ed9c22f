"""What one relation's cycle will do, decided from what was observed. Pure.

Everything a cycle decides before it writes anything: what to create (in
mapping-safe batches), what waits (held back, deferred), and what may be
deleted. ``syncd plan`` prints this; the daemon carries it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import NamedTuple

from syncd.core.batching import Mapping as AssociationMapping
from syncd.core.batching import plan_batches
from syncd.core.diff import diff
from syncd.core.pairs import PairKey
from syncd.core.prune import PruneDecision, PruneGuards, decide_prune, source_guard, sources_guard

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
) -> RelationPlan:
    """Diff desired against known, cut the creates into batches, decide the prune."""
    result = diff(desired, known, held_back.keys())
    batches = plan_batches(result.to_create, batch_size, mapping)
    owned_absent: frozenset[PairKey] = frozenset()
    decision = PruneDecision()
    if prune is not None:
        owned_absent = frozenset(prune.owned & result.absent)
        decision = decide_prune(
            absent_after(prune.absent_before, owned_absent, now),
            known=len(known),
            now=now,
            guards=prune.guards,
            blocked=sources_guard(prune.source_sizes, prune.failed_sources, prune.guards)
            or source_guard(len(desired), prune.last_good_desired, prune.guards),
        )
    return RelationPlan(
        relation=relation,
        desired=len(desired),
        known=len(known),
        batches=batches.batches,
        deferred=batches.deferred,
        held={k: held_back[k] for k in result.held},
        absent=result.absent,
        prune=decision,
        owned_absent=owned_absent,
    )


def absent_after(before: AbsentInfo, owned_absent: Set[PairKey], now: float) -> AbsentInfo:
    """Absence counted with this cycle: since stays, cycles grow by one; new ones start now."""
    out: dict[PairKey, tuple[float, int]] = {}
    for key in owned_absent:
        previous = before.get(key)
        out[key] = (now, 1) if previous is None else (previous[0], previous[1] + 1)
    return out
