"""Cut the pairs to create into requests the CMDB accepts. Pure.

bk-cmdb takes at most 200 details a request, and runs its 1:1 and 1:n checks
without a lock: two requests in flight at once that share the constrained
instance can both pass the check and break the mapping. Inside one request the
details are checked in order against the database as it stands, so keeping
every group of pairs that share a constrained instance inside ONE request makes
the CMDB itself arbitrate, exactly as a sequential client would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from syncd.core.disjoint import DisjointSets
from syncd.core.pairs import PairKey, unpack

MAX_BATCH = 200
"""bk-cmdb refuses a batch_create_instance_association with more details (1199035)."""


class Mapping(StrEnum):
    """A model association's mapping, as find_object_association reports it."""

    N_N = "n:n"
    ONE_N = "1:n"
    ONE_ONE = "1:1"

    @classmethod
    def parse(cls, raw: object) -> Mapping:
        """Read the CMDB's value; anything unknown is treated as the unconstrained n:n."""
        try:
            return cls(str(raw).strip().lower())
        except ValueError:
            return cls.N_N


@dataclass(frozen=True, slots=True)
class BatchPlan:
    batches: list[list[PairKey]]
    deferred: list[PairKey]
    """Pairs of a constrained group too large for one request. All but one of
    them must fail the mapping check anyway; they wait for the next cycle so
    that no two requests in flight share the constrained instance."""


def plan_batches(keys: Iterable[PairKey], size: int, mapping: Mapping = Mapping.N_N) -> BatchPlan:
    """Sorted, deterministic batches of at most ``size`` pairs, mapping-safe."""
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_BATCH}, got {size}")
    ordered = sorted(keys)
    if mapping is Mapping.N_N:
        return BatchPlan([ordered[i : i + size] for i in range(0, len(ordered), size)], [])
    groups = _groups(ordered, mapping)
    batches: list[list[PairKey]] = []
    deferred: list[PairKey] = []
    current: list[PairKey] = []
    for group in groups:
        if len(group) > size:
            head, rest = group[:size], group[size:]
            batches.append(head)
            deferred.extend(rest)
            continue
        if len(current) + len(group) > size:
            batches.append(current)
            current = []
        current.extend(group)
    if current:
        batches.append(current)
    return BatchPlan(batches, deferred)


def _groups(ordered: list[PairKey], mapping: Mapping) -> list[list[PairKey]]:
    """Connected groups of pairs sharing a constrained instance, in key order."""
    if mapping is Mapping.ONE_N:
        # 1:n: a target may have one source; pairs sharing a target group together.
        by_target: dict[int, list[PairKey]] = {}
        for key in ordered:
            by_target.setdefault(unpack(key)[1], []).append(key)
        return sorted(by_target.values(), key=lambda g: g[0])
    # 1:1: either side may have one partner; union-find over source-side and
    # target-side instances (kept apart: the same object may be on both sides).
    sets: DisjointSets[tuple[int, int]] = DisjointSets()
    for key in ordered:
        src, dst = unpack(key)
        sets.union((0, src), (1, dst))
    components: dict[tuple[int, int], list[PairKey]] = {}
    for key in ordered:
        components.setdefault(sets.find((0, unpack(key)[0])), []).append(key)
    return sorted(components.values(), key=lambda g: g[0])
