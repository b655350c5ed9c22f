"""Seeded fault injection: the same seed and request order give the same faults.

Gateway kinds: ``502`` and ``504`` are answered before the CMDB acts (safe to
retry); ``504-after`` and ``drop`` are answered after it acted, the ambiguous
cases a client must resolve by retrying (pairs then come back "already exist")
or re-reading.

CMDB kinds answer HTTP 200: ``cmdb-busy`` is the API server's own limiter (1199997,
nothing done), ``core-busy`` the core service's lock failure (1113053, nothing done;
the single create only, the batch path takes no lock) and ``audit-fail`` the audit-log
save failure (1109001): the batch create keeps its writes, the single create and the
deletes run in a transaction that is rolled back. ``watch-expired`` answers a
``resource_watch`` with a cursor 1103007 (the event node is gone), as a CMDB whose
event retention is broken would: a storm a watcher must brake.

Only the issue's original four are drawn unless a caller asks for more, so
callers that never name fault kinds see the behaviour they always did.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

FAULT_KINDS: tuple[str, ...] = ("502", "504", "504-after", "drop")
"""The default set, used when no fault kinds are given."""
CMDB_FAULT_KINDS: tuple[str, ...] = ("cmdb-busy", "core-busy", "audit-fail", "watch-expired")
ALL_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS + CMDB_FAULT_KINDS

CREATE_APIS = frozenset({"batch_create_instance_association", "add_instance_association"})
WRITE_APIS = CREATE_APIS | {"delete_related_inst_asso", "delete_instance_association"}
_ONLY_FOR: dict[str, frozenset[str]] = {
    "core-busy": frozenset({"add_instance_association"}),
    "audit-fail": WRITE_APIS,
    "watch-expired": frozenset({"resource_watch"}),
}
"""Kinds that make sense for some APIs only; the rest apply to every API."""


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Validate kind names; raises ValueError naming the bad one."""
    out = tuple(kinds)
    for kind in out:
        if kind not in ALL_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(ALL_FAULT_KINDS)})")
    return out


def applies(kind: str, api: str) -> bool:
    """Whether a fault kind can hit this API (``core-busy`` and ``audit-fail`` need a write)."""
    only = _ONLY_FOR.get(kind)
    return only is None or api in only


class FaultPlan:
    """Draws at most one fault per request from a private ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def draw(self, rate: float, kinds: tuple[str, ...], seed: int, api: str = "") -> str | None:
        """One decision per call; reseeds when the configured seed changed.

        The kind is chosen among those that apply to ``api``; when none does,
        the request gets no fault.
        """
        if seed != self.seed:
            self.seed = seed
            self._rng = random.Random(seed)
        if rate <= 0 or not kinds:
            return None
        if self._rng.random() >= rate:
            return None
        usable = kinds if not api else tuple(k for k in kinds if applies(k, api))
        if not usable:
            return None
        return self._rng.choice(usable)
