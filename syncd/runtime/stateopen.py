"""The daemon's state store: opened at start, or, when it cannot be used now (read-only,
disk full, a newer schema, another tenant's pairs), tried again each turn while every
cycle fails with one line per relation and sends nothing.

Only another syncd holding the store stops the start (:class:`StateLocked`, exit 75).
"""

from __future__ import annotations

import contextlib

import structlog

from syncd.config.settings import Settings
from syncd.engine.report import CycleReport, RelationReport
from syncd.runtime.metrics import Metrics
from syncd.state import StateError, StateLocked, StateStore
from syncd.support.log import relation_context

log = structlog.get_logger("syncd")


class StateOpener:
    """Opens the state store; remembers why the last try failed."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.error: str | None = None
        """Why the store could not be used at the last try; None once it opened."""

    def open(self, stack: contextlib.AsyncExitStack) -> StateStore | None:
        """The state store, closed by the stack; None (and one line) if it cannot be used now."""
        path = self.settings.state.path
        try:
            store, warning = StateStore.open(path, lock=True)
        except StateLocked:
            raise
        except StateError as exc:
            self.error = str(exc)
            log.error("state_unavailable", path=str(path), error=str(exc))
            return None
        mismatch = store.meta.tenant_mismatch(self.settings.cmdb.tenant_id)
        if mismatch is not None:  # another tenant's pairs: nothing may be pruned by them
            store.close()
            self.error = mismatch
            log.error("state_unavailable", path=str(path), error=mismatch)
            return None
        stack.callback(store.close)
        self.error = None
        if warning:
            log.warning("state_rebuilt", path=str(path), reason=warning)
        return store

    def unavailable_cycle(self, *, stopped: bool) -> CycleReport:
        """A cycle without a state store: each relation fails with one line, nothing is sent."""
        error = f"state store unavailable: {self.error}"
        reports = []
        for rel in self.settings.relations:
            with relation_context(rel.name, rel.bk_obj_asst_id, 0):
                log.error("relation_failed", error=error)
            reports.append(RelationReport(rel.name, error=error))
        report = CycleReport(reports, 0.0)
        self.metrics.record_cycle(0.0, ok=False)
        log.info("cycle", **report.summary(), stopped=stopped)
        return report
