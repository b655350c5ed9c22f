"""What the watch's events change: drift to repair, others' pairs made known.

Its own module because applying events to the known and desired state is a different
concern from following the CMDB's event stream (:mod:`syncd.informer.stream`): it decides
what an event means for a relation, and never talks to the CMDB.

- a known pair **deleted** by someone: forgotten; if the source still wants it, one
  ``drift`` line and the relation runs now, which re-creates it (counted as
  ``syncd_pairs_total{outcome="repaired"}``);
- a known pair **deleted** by someone that held a desired pair back (a mapping conflict):
  the relation runs now, which sends the held pair;
- a pair **created** by someone: known (not owned, so never pruned), never sent. Applied
  the adoption grace (:class:`syncd.informer.stream.WatchTimings`) after it arrives, by
  which time syncd's own creates have been recorded from their answers and are not
  mistaken for someone else's; a pair whose create syncd is still awaiting (a slow batch)
  waits again until it is answered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from syncd.config.settings import RelationSettings
from syncd.core.pairs import PairKey
from syncd.core.watchevents import Event, event_time, last_wins
from syncd.engine.reconcile import Reconciler
from syncd.informer.stream import ObjectWatch, WatchObserver, log


class DriftRepair:
    """Applies one relation's events to the known state and asks for repairing runs."""

    def __init__(
        self,
        engine: Reconciler,
        observer: WatchObserver | None,
        *,
        run: Callable[[RelationSettings], None],
        lost: Callable[[ObjectWatch, str], None],
        adopt_grace: float = 1.0,
    ) -> None:
        self.engine = engine
        self.known = engine.known
        self.observer = observer
        self.run = run
        """Run a relation now (the watcher's queue)."""
        self.lost = lost
        self.adopt_grace = adopt_grace
        """Start an object's watch over from now (every relation relists)."""
        self.drifted: dict[str, set[PairKey]] = {}
        """Pairs deleted behind syncd's back that the source wants: to be re-created."""
        self.repaired: Counter[str] = Counter()

    def apply(self, watch: ObjectWatch, rel: RelationSettings, events: list[Event]) -> None:
        """One relation's events: deletes now, creates of unknown pairs after the grace."""
        name = rel.name
        final = last_wins(events)
        known = self.known.holds(name, final)
        gone: list[PairKey] = []
        creates: list[tuple[str, PairKey]] = []
        for key, event in final.items():
            watch.pending.pop((name, key), None)
            if event.type == "delete":
                if key in known:
                    gone.append(key)
            elif key not in known:
                watch.pending[(name, key)] = event
                creates.append((name, key))
        if gone:
            self.known.observed(name, [], gone)
            self._drifted(rel, [final[k] for k in gone])
        if creates:
            loop = asyncio.get_running_loop()
            loop.call_later(self.adopt_grace, self._adopt_later, watch, rel, creates)

    def _drifted(self, rel: RelationSettings, deleted: list[Event]) -> None:
        desired = self.engine.last_desired.get(rel.name)
        drifted = self.drifted.setdefault(rel.name, set())
        blocking = self.engine.blocking.get(rel.name, set())
        wanted = 0
        for event in deleted:
            if event.key in blocking:
                blocking.discard(event.key)
                wanted += 1
                _log_drift(log.info, rel, event, "deleted", "release")
                continue
            if desired is not None and event.key not in desired:
                continue
            wanted += 1
            if event.key in drifted:
                continue
            drifted.add(event.key)
            _log_drift(log.warning, rel, event, "deleted", "recreate")
        if wanted:
            self.run(rel)

    def _adopt_later(
        self, watch: ObjectWatch, rel: RelationSettings, keys: list[tuple[str, PairKey]]
    ) -> None:
        try:
            self._adopt(watch, rel, keys)
        except Exception as exc:  # a callback: nobody else would see it
            log.error("watch_adopt_failed", relation=rel.name, error=repr(exc))
            self.lost(watch, "gap")

    def _adopt(
        self, watch: ObjectWatch, rel: RelationSettings, keys: list[tuple[str, PairKey]]
    ) -> None:
        """Creates that waited out the grace and are still unknown: someone else's."""
        due = [watch.pending.pop(k) for k in keys if k in watch.pending]
        if not due:
            return
        sending = self.known.sending(rel.name, [e.key for e in due])
        if sending:  # syncd's own create, not answered yet: look again later
            later = [(rel.name, e.key) for e in due if e.key in sending]
            watch.pending.update({(rel.name, e.key): e for e in due if e.key in sending})
            loop = asyncio.get_running_loop()
            loop.call_later(self.adopt_grace, self._adopt_later, watch, rel, later)
            due = [e for e in due if e.key not in sending]
        known = self.known.holds(rel.name, [e.key for e in due])
        theirs = [e for e in due if e.key not in known]
        if not theirs:
            return
        self.known.observed(
            rel.name, [(e.src, e.dst, e.association_id or None) for e in theirs], []
        )
        drifted = self.drifted.get(rel.name, set())
        for event in theirs:
            drifted.discard(event.key)
            _log_drift(log.info, rel, event, "created", "known")

    def count_repaired(self, rel: RelationSettings) -> None:
        drifted = self.drifted.get(rel.name)
        if not drifted:
            return
        back = self.known.holds(rel.name, drifted)
        if back:
            drifted -= back
            self.repaired[rel.name] += len(back)
            if self.observer is not None:
                self.observer.record_pair(rel.name, "repaired", len(back))
            log.info("drift_repaired", relation=rel.name, pairs=len(back), left=len(drifted))


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_drift(
    emit: Callable[..., Any], rel: RelationSettings, event: Event, change: str, action: str
) -> None:
    """One `drift` line: what changed in the CMDB behind syncd's back, and what syncd does."""
    emit(
        "drift",
        relation=rel.name,
        bk_obj_asst_id=rel.bk_obj_asst_id,
        change=change,
        bk_inst_id=event.src,
        bk_asst_inst_id=event.dst,
        association_id=event.association_id,
        at=_iso(event_time(event.cursor)),
        by=event.by,
        action=action,
    )
