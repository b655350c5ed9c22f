"""Following the CMDB's association events of each watched object: cursors, long polls, gaps.

Its own module because the event stream (taking a "from now" cursor, one long poll after
another, storing the cursor, starting over after an expired cursor or a gap) is a
concept of its own; what the events change is :mod:`syncd.informer.drift`, and the tasks and
run queue around both are :mod:`syncd.informer.watch`.
"""

from __future__ import annotations

import asyncio
import math
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from syncd.cmdb.client import CmdbClient
from syncd.config.settings import RelationSettings
from syncd.core.answer import Verdict
from syncd.core.pairs import PairKey
from syncd.core.watchevents import (
    EVENT_STEP,
    EXPIRED,
    CreateEchoes,
    Event,
    WatchGap,
    event_time,
    parse_answer,
)
from syncd.state import StateStore

if TYPE_CHECKING:
    from syncd.informer.drift import DriftRepair

log = structlog.get_logger("syncd.watch")

PACE = 1.0
"""Seconds between watch requests unless the last answer was full: events coming one by
one (syncd's own creates among them) cost at most one read a second per object."""
CATCH_UP_SHARE = 0.05
"""After a full answer (more events waiting, e.g. syncd's own creates of a large first
sync), the watch asks again after ``1 / (share * rate_limit)`` seconds, 0.2 s at least:
it takes at most 5% of the budget it shares with the writes on the ESB."""
RETRY_BASE = 1.0
RETRY_CAP = 30.0
"""Pause after a failed watch request: doubles from RETRY_BASE up to RETRY_CAP."""
RELIST_FLOOR = 10.0
RELIST_CAP = 300.0
"""Least time between two restarts of an object's watch (each relists its relations):
doubles from RELIST_FLOOR up to RELIST_CAP while restarts follow each other without a
good answer in between, so a CMDB answering 1103007 to everything costs a list every
few minutes, not a list a second. The first restart after a good answer is at once."""


class WatchObserver(Protocol):
    """Where the watch reports (the metrics registry implements this)."""

    def watching(self, relation: str) -> None: ...
    def record_watch_events(self, bk_obj_id: str, event_type: str, n: int) -> None: ...
    def set_watch_lag(self, bk_obj_id: str, seconds: float) -> None: ...
    def record_relist(self, relation: str, reason: str) -> None: ...
    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None: ...


@dataclass
class ObjectWatch:
    """The watch of one object's associations (every relation whose source it is)."""

    bk_obj_id: str
    relations: list[RelationSettings]
    cursor: str | None = None
    since: float = -math.inf
    """Monotonic time the cursor's "now" was asked for: a list begun earlier missed events."""
    state: str = "starting"
    events: Counter[str] = field(default_factory=Counter)
    lag: float | None = None
    last_answer: float | None = None
    lost: str = "gap"
    """Why the next "from now" cursor is needed: the relist reason of the relations."""
    pending: dict[tuple[str, PairKey], Event] = field(default_factory=dict)
    """Creates of unknown pairs waiting out ADOPT_GRACE, by (relation, pair)."""
    echoes: CreateEchoes = field(default_factory=CreateEchoes)
    """The second create event bk-cmdb sends per batch-created association, dropped."""
    next_request: float = -math.inf
    """Monotonic time before which no watch request of this object leaves."""
    restart_due: float = -math.inf
    """Monotonic time before which the watch does not start over (see RELIST_FLOOR)."""
    restarts: int = 0
    """Restarts since the last good answer: the exponent of the restart pause."""


class ObjectFollowing:
    """The part of :class:`syncd.informer.watch.Watcher` that follows each object's events.

    A mixin: it shares the watcher's bookkeeping of lists (which relation was listed
    when, which is being listed) and its run queue (``request``).
    """

    client: CmdbClient
    store: StateStore
    observer: WatchObserver | None
    clock: Callable[[], float]
    monotonic: Callable[[], float]
    drift: DriftRepair
    _list_began: dict[str, float]
    _listed_at: dict[str, float]
    _replay: dict[str, list[Event]]
    _uncovered: set[str]
    _catch_up: float

    def request(self, rel: RelationSettings, *, relist: bool = False, reason: str = "") -> None:
        raise NotImplementedError

    async def _from_now(self, watch: ObjectWatch, failures: int = 0) -> bool:
        """Take the "from now" cursor; True when got. Relations listed before it relist."""
        await self._paced(watch)
        began = self.monotonic()
        # Unfiltered, "now" is the newest event of any object; filtered, a newest event
        # of another object gives the no-event cursor: every event kept (hours) again.
        answer = await self.client.watch_associations(None, None)
        if answer.verdict is not Verdict.OK:  # e.g. allowed to watch this object only
            await self._paced(watch)
            answer = await self.client.watch_associations(watch.bk_obj_id, None)
        error = answer.error if answer.verdict is not Verdict.OK else None
        if error is None:
            try:
                _, cursor, _ = parse_answer(answer.data)
            except WatchGap as exc:
                error = str(exc)
        if error is not None:
            watch.state = "failing"
            (log.warning if failures == 0 else log.debug)(
                "watch_failed",
                object=watch.bk_obj_id,
                error=error,
                hint=answer.hint or None,
                failures=failures + 1,
            )
            return False
        watch.cursor, watch.since = cursor, began
        for rel in watch.relations:
            listed = self._listed_at.get(rel.name)
            if rel.name in self._list_began:
                continue  # listing now: list_finished compares its start
            if listed is None and not self.store.has_resynced(rel.name):
                continue  # its first cycle lists it, after this cursor
            if listed is None or listed < began:
                self.request(rel, relist=True, reason=watch.lost)
        self._keep_cursor(watch)
        return True

    async def _paced(self, watch: ObjectWatch, after: float = PACE) -> None:
        """Wait for the object's next request slot, then take it: whatever the CMDB
        answers (errors, gaps, expired cursors), one request per ``after`` seconds."""
        wait = watch.next_request - self.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        watch.next_request = self.monotonic() + after

    def _keep_cursor(self, watch: ObjectWatch) -> None:
        """Store the cursor while every relation of the object is in step with it."""
        if watch.cursor is None:
            return
        for rel in watch.relations:
            if rel.name in self._uncovered or not self.store.has_resynced(rel.name):
                return
        self.store.set_watch_cursor(watch.bk_obj_id, watch.cursor, self.client.settings.tenant_id)

    def _resume(self, watch: ObjectWatch) -> None:
        """Go on from the stored cursor if every relation's state goes with it."""
        stored = self.store.watch_cursor(watch.bk_obj_id, self.client.settings.tenant_id)
        if stored is not None and all(self.store.has_resynced(r.name) for r in watch.relations):
            watch.cursor = stored

    async def _follow(self, watch: ObjectWatch) -> None:
        """One object's watch loop; ends only when cancelled. Whatever goes wrong in a
        turn (the state file, a bug) is logged and the watch starts over from now: the
        relations are listed again, so nothing is lost."""
        failures = 0
        while True:
            try:
                failures = await self._turn(watch, failures)
            except Exception as exc:
                failures += 1
                log.error(
                    "watch_failed",
                    object=watch.bk_obj_id,
                    error=repr(exc),
                    traceback="".join(traceback.format_exception(exc)).strip(),
                )
                self._lost(watch, "gap")
                await asyncio.sleep(_backoff(failures))

    async def _turn(self, watch: ObjectWatch, failures: int) -> int:
        """One watch request and what follows from it; the failures so far."""
        if watch.cursor is None:
            watch.state = "starting"
            wait = watch.restart_due - self.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if await self._from_now(watch, failures):
                return 0
            await asyncio.sleep(_backoff(failures + 1))
            return failures + 1
        await self._paced(watch)
        watch.state = "watching"
        answer = await self.client.watch_associations(watch.bk_obj_id, watch.cursor)
        if answer.verdict is not Verdict.OK:
            if answer.code == EXPIRED:
                log.warning("watch_expired", object=watch.bk_obj_id, error=answer.error)
                self._lost(watch, "expired")
                return 0
            watch.state = "failing"
            delay = _backoff(failures + 1)
            # The first failure of a streak at warning, the rest (every 30 s) at debug.
            (log.warning if failures == 0 else log.debug)(
                "watch_failed",
                object=watch.bk_obj_id,
                error=answer.error,
                hint=answer.hint or None,
                retry_in=delay,
                failures=failures + 1,
            )
            await asyncio.sleep(delay)
            return failures + 1
        try:
            events, cursor, entries = parse_answer(answer.data)
        except WatchGap as exc:
            log.warning("watch_gap", object=watch.bk_obj_id, error=str(exc))
            self._lost(watch, "gap")
            return 0
        if failures:
            log.info("watch_recovered", object=watch.bk_obj_id, failures=failures)
        watch.restarts = 0
        self._received(watch, events)
        watch.cursor = cursor
        self._keep_cursor(watch)
        if entries >= EVENT_STEP:  # more are waiting: the next request may go sooner
            watch.next_request = self.monotonic() + self._catch_up
        return 0

    def _lost(self, watch: ObjectWatch, reason: str) -> None:
        """The cursor cannot be gone on from: start from now; every relation relists."""
        watch.cursor = None
        watch.lost = reason
        watch.since = math.inf  # every relation listed before the next cursor relists
        self.store.set_watch_cursor(watch.bk_obj_id, None, self.client.settings.tenant_id)
        for rel in watch.relations:
            self._listed_at.pop(rel.name, None)
        pause = _restart_pause(watch.restarts)
        watch.restarts += 1
        watch.restart_due = self.monotonic() + pause
        log.info("watch_restarting", object=watch.bk_obj_id, reason=reason, restart_in=pause)

    def _received(self, watch: ObjectWatch, events: list[Event]) -> None:
        now = self.clock()
        watch.last_answer = self.monotonic()
        events = watch.echoes.fresh(events)  # one change, one event: counted and applied once
        by_type = Counter(e.type for e in events)
        watch.events.update(by_type)
        lag = 0.0
        if events:
            stamped = event_time(events[-1].cursor)
            lag = max(0.0, now - stamped) if stamped is not None else 0.0
        watch.lag = lag
        if self.observer is not None:
            for kind, n in by_type.items():
                self.observer.record_watch_events(watch.bk_obj_id, kind, n)
            self.observer.set_watch_lag(watch.bk_obj_id, lag)
        for rel in watch.relations:
            mine = [
                e
                for e in events
                if e.bk_obj_asst_id == rel.bk_obj_asst_id and e.bk_obj_id in ("", rel.bk_obj_id)
            ]
            if not mine:
                continue
            if rel.name in self._replay:
                self._replay[rel.name].extend(mine)
            self.drift.apply(watch, rel, mine)


def _restart_pause(restarts: int) -> float:
    """0 for the first restart after a good answer, then RELIST_FLOOR doubling to the cap."""
    if restarts <= 0:
        return 0.0
    return float(min(RELIST_CAP, RELIST_FLOOR * 2 ** min(restarts - 1, 10)))


def _backoff(failures: int) -> float:
    return float(min(RETRY_CAP, RETRY_BASE * 2 ** min(failures - 1, 10)))
