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
reconciler calls around a list, the runs it asks of the engine's work queue
(:mod:`syncd.engine.workqueue`), the relist timer, the tasks' lifecycle and the /readyz
snapshot.

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
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from syncd.config.settings import RelationSettings, Settings
from syncd.core.pairs import PairKey
from syncd.engine.reconcile import Reconciler
from syncd.engine.workqueue import Work
from syncd.informer.drift import DriftRepair
from syncd.informer.stream import (
    CATCH_UP_SHARE,
    ListBook,
    ObjectStream,
    ObjectWatch,
    StreamParts,
    WatchObserver,
    WatchTimings,
    log,
)

DEFAULT_TIMINGS = WatchTimings()


class Watcher:
    """The watch tasks of one daemon, and the hooks the reconciler calls."""

    def __init__(
        self,
        settings: Settings,
        engine: Reconciler,
        *,
        observer: WatchObserver | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timings: WatchTimings = DEFAULT_TIMINGS,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = engine.client
        self.store = engine.store
        self.known = engine.known
        self.observer = observer
        self.clock = clock
        self.monotonic = monotonic
        self.timings = timings
        self.drift = DriftRepair(
            engine, observer, run=self.request, lost=self._lost, adopt_grace=timings.adopt_grace
        )
        self.book = ListBook()
        parts = StreamParts(
            client=self.client,
            store=self.store,
            book=self.book,
            request=self.request,
            deliver=self.drift.apply,
            observer=observer,
            timings=timings,
            catch_up=max(0.2, 1 / (CATCH_UP_SHARE * settings.cmdb.rate_limit)),
            clock=clock,
            monotonic=monotonic,
        )
        by_object: dict[str, list[RelationSettings]] = {}
        for rel in settings.relations:
            by_object.setdefault(rel.bk_obj_id, []).append(rel)
        self.streams = {
            obj: ObjectStream(ObjectWatch(obj, rels), parts) for obj, rels in by_object.items()
        }
        self.objects = {obj: stream.watch for obj, stream in self.streams.items()}
        self.relists: Counter[str] = Counter()

    @property
    def drifted(self) -> dict[str, set[PairKey]]:
        """Pairs deleted behind syncd's back that the source wants: to be re-created."""
        return self.drift.drifted

    @property
    def repaired(self) -> Counter[str]:
        return self.drift.repaired

    # -- hooks: the reconciler's lists ------------------------------------------------

    def list_started(self, rel: RelationSettings) -> None:
        self.book.began[rel.name] = self.monotonic()
        self.book.replay[rel.name] = []

    def list_finished(self, rel: RelationSettings, *, ok: bool) -> None:
        began = self.book.began.pop(rel.name, self.monotonic())
        replay = self.book.replay.pop(rel.name, [])
        if not ok:
            return  # the old known state stays, and already has these events
        self.book.listed_at[rel.name] = began
        if replay:
            self.drift.apply(self.objects[rel.bk_obj_id], rel, replay)
        watch = self.objects[rel.bk_obj_id]
        if began < watch.since:
            self.request(rel, relist=True, reason="gap")
        else:
            self.book.uncovered.discard(rel.name)

    # -- queueing runs ----------------------------------------------------------------

    def request(self, rel: RelationSettings, *, relist: bool = False, reason: str = "") -> None:
        """Run ``rel`` now (after its current run); ``relist``: list it from the CMDB first.
        The engine's work queue runs it, merged with any other request waiting for it."""
        if relist:
            self.relists[reason] += 1
            if self.observer is not None:
                self.observer.record_relist(rel.name, reason)
            log.info("relist_requested", relation=rel.name, reason=reason)
            self.book.uncovered.add(rel.name)
            # Until the relist is in, the stored cursor does not describe the state.
            self.store.meta.set_watch_cursor(rel.bk_obj_id, None, self.client.settings.tenant_id)
        if self.engine.stopping:
            return
        run = self.engine.queue.add(Work(rel.name, relist))
        run.add_done_callback(functools.partial(self._ran, rel, relist))

    def _ran(self, rel: RelationSettings, relist: bool, run: asyncio.Future[object]) -> None:
        """After a run the watch asked for: count what it repaired, store the cursor."""
        if not run.cancelled() and run.exception() is not None:
            # The run's own boundary logs its failures; this is anything beyond it.
            log.error("watch_run_failed", relation=rel.name, error=repr(run.exception()))
        try:
            self.drift.count_repaired(rel)
            if relist:
                self.streams[rel.bk_obj_id].keep_cursor()
        except Exception as exc:  # a callback: nobody else would see it
            log.error("watch_run_failed", relation=rel.name, error=repr(exc))

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
                if last is None or self.engine.queue.busy(rel.name):
                    continue
                if now - last >= interval:
                    self.request(rel, relist=True, reason="interval")
                elif rel.name in self.book.uncovered and rel.name not in self.book.began:
                    self.request(rel, relist=True, reason="retry")

    # -- lifecycle -------------------------------------------------------------------

    async def prime(self) -> None:
        """Resume stored cursors, or ask where "now" is, before the first list."""
        asks = []
        for stream in self.streams.values():
            stream.resume()
            if stream.watch.cursor is None:
                asks.append(stream.from_now())
        if asks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*asks), self.timings.prime_timeout)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watcher]:
        """Hooks in, cursors primed, tasks running inside; cancelled and reaped after."""
        self.known.lists = self
        if self.observer is not None:
            for rel in self.settings.relations:
                self.observer.watching(rel.name)
        await self.prime()
        tasks = [asyncio.create_task(s.follow()) for s in self.streams.values()]
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

    def _lost(self, watch: ObjectWatch, reason: str) -> None:
        """Start an object's watch over from now (every relation relists)."""
        self.streams[watch.bk_obj_id].lost(reason)
