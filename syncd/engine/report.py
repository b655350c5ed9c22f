"""What a cycle did: one RelationReport per relation, summed into a CycleReport.

The ``relation`` and ``cycle`` log lines and the health/status summaries are
built from these, so a field added here reaches all of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from syncd.core.moves import MOVE_BLOCKED, MOVE_CAPPED
from syncd.core.plan import RelationPlan, UnresolvedKey
from syncd.engine.desired import Desired


@dataclass
class RelationReport:
    """What one relation's cycle did; logged as ``event=relation``."""

    relation: str
    desired: int = 0
    known: int = 0
    sent: int = 0
    created: int = 0
    exists: int = 0
    failed: int = 0
    held: int = 0
    deferred: int = 0
    pending: int = 0
    """Planned creates not answered created/exists (stopped, refused, failed)."""
    bad_records: int = 0
    unresolved: int = 0
    unresolved_keys: list[UnresolvedKey] = field(default_factory=list, repr=False)
    """Keys that resolved to no instance (or to two), with their record and source."""
    source_counts: dict[str, int] = field(default_factory=dict)
    """What the source counted besides bad records (e.g. NetBox's ignored cables)."""
    absent: int = 0
    deleted: int = 0
    delete_failed: int = 0
    moved: int = 0
    """Moves completed: the old pair deleted, the new one created (or found existing)."""
    move_failed: int = 0
    """Move steps that failed (a delete refused, or the create after its delete)."""
    moves_held: int = 0
    """Moves due but held back by the cap or the source guard (they happen later)."""
    kept_uncertain: int = 0
    """Known pairs not in the source kept because a fact with an unresolved key could be them."""
    isolation_requests: int = 0
    """Batch-create requests beyond each batch's first, to settle whole-request refusals."""
    conflicts: list[int] = field(default_factory=list, repr=False)
    """Pairs the CMDB refused for a mapping conflict this cycle (their blockers are looked up)."""
    prune_blocked: str | None = None
    resynced: bool = False
    error: str | None = None
    duration: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds from the start to each step reached, in order: ``read`` (the source's pairs
    in), ``observed`` (the known pairs too: the plan may start), ``planned``, ``sending``
    (the first create about to leave), ``sent`` (every create answered), ``pruned``. Where
    a slow cycle spent its time, and what ran before its first send."""
    started: float = field(default_factory=time.monotonic, repr=False)

    def mark(self, phase: str, *, first: bool = False) -> None:
        """``phase`` is reached now (``first``: keep an earlier mark of it)."""
        if not (first and phase in self.phases):
            self.phases[phase] = round(time.monotonic() - self.started, 3)

    @property
    def converged(self) -> bool:
        """Nothing is left to do: every desired pair is in the CMDB.

        Counted from what is left (not ``known >= desired``: known may hold pairs
        the source no longer has while desired ones are missing).
        """
        return (
            self.error is None
            and self.pending == 0
            and self.failed == 0
            and self.held == 0
            and self.deferred == 0
            and self.unresolved == 0
        )

    def log_fields(self) -> dict[str, Any]:
        """The ``relation`` line's fields (name and model id come from the bound context)."""
        fields = asdict(self)
        fields["duration"] = round(self.duration, 3)
        fields.pop("relation")
        fields.pop("unresolved_keys")
        fields.pop("conflicts")
        fields.pop("started")
        return fields


T = TypeVar("T")


async def marked(step: Awaitable[T], report: RelationReport, phase: str) -> T:
    """``step``'s result, with ``phase`` marked on ``report`` when it is in (a step that
    runs beside another, e.g. the source read beside the CMDB's, gets its own time)."""
    result = await step
    report.mark(phase)
    return result


@dataclass
class CycleReport:
    relations: list[RelationReport] = field(default_factory=list)
    duration: float = 0.0
    partial: bool = False
    """Only some relations ran (a push asked for them), not every one."""

    def updated_by(self, newer: CycleReport) -> CycleReport:
        """This report with the relations ``newer`` ran replaced by their newer reports:
        after a partial cycle, what every relation last did (readiness must not forget a
        relation that failed in the last full cycle)."""
        fresh = {r.relation: r for r in newer.relations}
        merged = [fresh.pop(r.relation, r) for r in self.relations]
        return CycleReport([*merged, *fresh.values()], newer.duration)

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.relations)

    @property
    def ok(self) -> bool:
        """No relation-level failure (the readiness signal)."""
        return all(r.error is None for r in self.relations)

    @property
    def converged(self) -> bool:
        return all(r.converged for r in self.relations)

    def summary(self) -> dict[str, Any]:
        return {
            "desired": self.total("desired"),
            "known": self.total("known"),
            "sent": self.total("sent"),
            "isolation_requests": self.total("isolation_requests"),
            "created": self.total("created"),
            "exists": self.total("exists"),
            "failed": self.total("failed"),
            "held": self.total("held"),
            "unresolved": self.total("unresolved"),
            "deleted": self.total("deleted"),
            "moved": self.total("moved"),
            "kept_uncertain": self.total("kept_uncertain"),
            "relations_failed": sum(1 for r in self.relations if r.error is not None),
            "duration": round(self.duration, 3),
        }


def fill_report(report: RelationReport, desired: Desired, decided: RelationPlan) -> None:
    """A relation's report from what its source gave and what the plan decided."""
    report.desired = len(desired.pairs)
    report.bad_records = desired.bad_records
    report.unresolved = len(desired.unresolved)
    report.unresolved_keys = list(desired.unresolved)
    report.source_counts = dict(desired.source_counts)
    report.held = len(decided.held)
    report.absent = len(decided.absent)
    report.deferred = len(decided.deferred)
    report.pending = len(decided.to_create)
    report.prune_blocked = decided.prune.blocked
    report.error = desired.failure
    report.kept_uncertain = len(decided.kept)
    report.moves_held = sum(1 for r, _ in decided.held.values() if r in (MOVE_CAPPED, MOVE_BLOCKED))
