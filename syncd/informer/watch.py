"""The watch: after a relation's list, follow the CMDB's association events like an informer.

A Kubernetes informer lists, then watches from where the list began, and relists on a
timer. Here the list is the relation's resync (:meth:`syncd.engine.known.Known.resync`) and
the watch is bk-cmdb's ``resource_watch`` for ``inst_asst``, one long poll per watched
object (``bk_filter.bk_sub_resource`` = the relations' ``bk_obj_id``), through the same
client, rate budget and retries as every read, on connections of its own so a held
request never takes a writer's slot.

What an event changes is :mod:`syncd.informer.drift`; reading the answers,
:mod:`syncd.core.watchevents`; following each object's stream,
:mod:`syncd.informer.stream`. This module holds them together: the hooks the
reconciler calls around a list, the queue of runs, the relist timer, the tasks' lifecycle
and the /readyz snapshot.

No event may be lost between a list and the watch: the watch takes its "from now"
cursor before the first list (start-up waits for it), events arriving during a list are
applied again on top of it, and the cursor is kept in the state so a restart goes on
where it stopped. A relation listed before the watch's cursor was taken, an expired
cursor (1103007) or an answer without a cursor is a gap: the relation is listed again.
``sync.relist_interval`` relists anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from syncd.config.settings import RelationSettings, Settings
from syncd.core.pairs import PairKey
from syncd.core.watchevents import Event
from syncd.engine.reconcile import Reconciler
from syncd.informer.drift import DriftRepair
from syncd.informer.stream import CATCH_UP_SHARE, ObjectFollowing, ObjectWatch, WatchObserver, log

PRIME_TIMEOUT = 10.0
"""Start-up waits at most this long for the "from now" cursors."""


class Watcher(ObjectFollowing):
    """The watch tasks of one daemon, and the hooks the reconciler calls."""

    def __init__(
        self,
        settings: Settings,
        engine: Reconciler,
        *,
        observer: WatchObserver | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = engine.client
        self.store = engine.store
        self.known = engine.known
        self.observer = observer
        self.clock = clock
        self.monotonic = monotonic
        self.drift = DriftRepair(engine, observer, run=self.request, lost=self._lost)
        by_object: dict[str, list[RelationSettings]] = {}
        for rel in settings.relations:
            by_object.setdefault(rel.bk_obj_id, []).append(rel)
        self.objects = {obj: ObjectWatch(obj, rels) for obj, rels in by_object.items()}
        self._list_began: dict[str, float] = {}
        self._listed_at: dict[str, float] = {}
        """Monotonic start of each relation's last good list in this process."""
        self._replay: dict[str, list[Event]] = {}
        """Events of relations being listed: applied again once the list is in."""
        self.relists: Counter[str] = Counter()
        self._queue: dict[str, bool] = {}
        """Relations to run now -> whether to list them again first."""
        self._queued = asyncio.Event()
        self._running: set[str] = set()
        self._catch_up = max(0.2, 1 / (CATCH_UP_SHARE * settings.cmdb.rate_limit))
        self._uncovered: set[str] = set()
        """Relations whose known state may miss events until they are listed again."""

    @property
    def drifted(self) -> dict[str, set[PairKey]]:
        """Pairs deleted behind syncd's back that the source wants: to be re-created."""
        return self.drift.drifted

    @property
    def repaired(self) -> Counter[str]:
        return self.drift.repaired

    # -- hooks: the reconciler's lists ------------------------------------------------

    def list_started(self, rel: RelationSettings) -> None:
        self._list_began[rel.name] = self.monotonic()
        self._replay[rel.name] = []

    def list_finished(self, rel: RelationSettings, *, ok: bool) -> None:
        began = self._list_began.pop(rel.name, self.monotonic())
        replay = self._replay.pop(rel.name, [])
        if not ok:
            return  # the old known state stays, and already has these events
        self._listed_at[rel.name] = began
        if replay:
            self.drift.apply(self.objects[rel.bk_obj_id], rel, replay)
        watch = self.objects[rel.bk_obj_id]
        if began < watch.since:
            self.request(rel, relist=True, reason="gap")
        else:
            self._uncovered.discard(rel.name)

    # -- queueing runs ----------------------------------------------------------------

    def request(self, rel: RelationSettings, *, relist: bool = False, reason: str = "") -> None:
        """Run ``rel`` now (after its current run); ``relist``: list it from the CMDB first."""
        if relist:
            self.relists[reason] += 1
            if self.observer is not None:
                self.observer.record_relist(rel.name, reason)
            log.info("relist_requested", relation=rel.name, reason=reason)
            self._uncovered.add(rel.name)
            # Until the relist is in, the stored cursor does not describe the state.
            self.store.set_watch_cursor(rel.bk_obj_id, None, self.client.settings.tenant_id)
        self._queue[rel.name] = self._queue.get(rel.name, False) or relist
        self._queued.set()

    async def _runner(self) -> None:
        """Runs queued relations, each once however often it was asked for meanwhile."""
        names = {rel.name: rel for rel in self.settings.relations}
        while True:
            await self._queued.wait()
            self._queued.clear()
            queue, self._queue = self._queue, {}
            if self.engine.stopping:
                return
            async with asyncio.TaskGroup() as tg:
                for name, relist in queue.items():
                    tg.create_task(self._run(names[name], relist))

    async def _run(self, rel: RelationSettings, relist: bool) -> None:
        self._running.add(rel.name)
        try:
            await self.engine.run_now(rel, resync=relist)
        except Exception as exc:  # the run's own boundary logs; this keeps the runner
            log.error("watch_run_failed", relation=rel.name, error=repr(exc))
        finally:
            self._running.discard(rel.name)
        self.drift.count_repaired(rel)
        if relist:
            self._keep_cursor(self.objects[rel.bk_obj_id])

    # -- the relist timer --------------------------------------------------------------

    async def _relist_timer(self) -> None:
        """Relist each relation whose last list is older than ``sync.relist_interval``."""
        interval = self.settings.sync.relist_interval
        period = min(60.0, max(1.0, interval / 4))
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for rel in self.settings.relations:
                last = self.store.last_resync(rel.name)
                if last is None or rel.name in self._running or rel.name in self._queue:
                    continue
                if now - last >= interval:
                    self.request(rel, relist=True, reason="interval")
                elif rel.name in self._uncovered and rel.name not in self._list_began:
                    self.request(rel, relist=True, reason="retry")

    # -- lifecycle -------------------------------------------------------------------

    async def prime(self) -> None:
        """Resume stored cursors, or ask where "now" is, before the first list."""
        asks = []
        for watch in self.objects.values():
            self._resume(watch)
            if watch.cursor is None:
                asks.append(self._from_now(watch))
        if asks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*asks), PRIME_TIMEOUT)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watcher]:
        """Hooks in, cursors primed, tasks running inside; cancelled and reaped after."""
        self.known.lists = self
        if self.observer is not None:
            for rel in self.settings.relations:
                self.observer.watching(rel.name)
        await self.prime()
        tasks = [asyncio.create_task(self._follow(w)) for w in self.objects.values()]
        tasks.append(asyncio.create_task(self._runner()))
        tasks.append(asyncio.create_task(self._relist_timer()))
        log.info("watching", objects=sorted(self.objects))
        try:
            yield self
        finally:
            self.known.lists = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        """For /readyz: per object its state, lag, events; drift repaired per relation."""
        now = self.monotonic()
        return {
            "objects": {
                obj: {
                    "state": w.state,
                    "lag_s": None if w.lag is None else round(w.lag, 3),
                    "last_answer_age_s": (
                        None if w.last_answer is None else round(now - w.last_answer, 3)
                    ),
                    "events": dict(w.events),
                }
                for obj, w in self.objects.items()
            },
            "repaired": dict(self.repaired),
            "drift_pending": {k: len(v) for k, v in self.drifted.items() if v},
            "relists": dict(self.relists),
        }
