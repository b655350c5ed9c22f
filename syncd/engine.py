"""Moved: the cycle is :mod:`syncd.reconcile` over stage modules (see docs/architecture.md).

These names stay importable for code written against the old hub.
"""

from __future__ import annotations

from syncd.desired import BadValue, make_source, to_id
from syncd.known import RelationRefused
from syncd.plan import RelationPlan
from syncd.reconcile import EngineObserver
from syncd.reconcile import Reconciler as Engine
from syncd.report import CycleReport, RelationReport

__all__ = [
    "BadValue",
    "CycleReport",
    "Engine",
    "EngineObserver",
    "RelationPlan",
    "RelationRefused",
    "RelationReport",
    "make_source",
    "to_id",
]
