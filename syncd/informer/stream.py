"""Following the CMDB's association events of one watched object: cursors, long polls, gaps.

Its own module because the event stream (taking a "from now" cursor, one long poll after
another, storing the cursor, starting over after an expired cursor or a gap) is a
concept of its own. An :class:`ObjectStream` knows nothing of what the events change or of
how runs are queued: it reports through the callbacks of its :class:`StreamParts` (events to
:mod:`syncd.informer.drift`, relists to :mod:`syncd.informer.watch`), so neither module is
imported here.
"""

from __future__ import annotations

import asyncio
import math
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

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

log = structlog.get_logger("syncd.watch")

CATCH_UP_SHARE = 0.05
"""After a full answer (more events waiting, e.g. syncd's own creates of a large first
sync), the watch asks again after ``1 / (share * rate_limit)`` seconds, 0.2 s at least:
it takes at most 5% of the budget it shares with the writes on the ESB."""


@dataclass(frozen=True)
class WatchTimings:
    """The watch's waits, a parameter so tests need not sleep in real time."""

    pace: float = 1.0
    """Seconds between watch requests unless the last answer was full: events coming one
    by one (syncd's own creates among them) cost at most one read a second per object."""
    adopt_grace: float = 1.0
    """Seconds a create of an unknown pair waits before it is taken as someone else's."""
    prime_timeout: float = 10.0
    """Start-up waits at most this long for the "from now" cursors."""
    retry_base: float = 1.0
    retry_cap: float = 30.0
    """Pause after a failed watch request: doubles from retry_base up to retry_cap."""
    relist_floor: float = 10.0
    relist_cap: float = 300.0
    """Least time between two restarts of an object's watch (each relists its relations):
    doubles from relist_floor up to relist_cap while restarts follow each other without a
    good answer in between, so a CMDB answering 1103007 to everything costs a list every
    few minutes, not a list a second. The first restart after a good answer is at once."""

    def backoff(self, failures: int) -> float:
        return float(min(self.retry_cap, self.retry_base * 2 ** min(failures - 1, 10)))

    def restart_pause(self, restarts: int) -> float:
        """0 for the first restart after a good answer, then relist_floor doubling."""
        if restarts <= 0:
            return 0.0
        return float(min(self.relist_cap, self.relist_floor * 2 ** min(restarts - 1, 10)))


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
    """Creates of unknown pairs waiting out the adoption grace, by (relation, pair)."""
    echoes: CreateEchoes = field(default_factory=CreateEchoes)
    """The second create event bk-cmdb sends per batch-created association, dropped."""
    next_request: float = -math.inf
    """Monotonic time before which no watch request of this object leaves."""
    restart_due: float = -math.inf
    """Monotonic time before which the watch does not start over (see relist_floor)."""
    restarts: int = 0
    """Restarts since the last good answer: the exponent of the restart pause."""


@dataclass
class ListBook:
    """Which relation was listed when, and which is being listed now: written by the
    watcher (the reconciler tells it), read by every object's stream."""

    began: dict[str, float] = field(default_factory=dict)
    """Monotonic start of each list in progress."""
    listed_at: dict[str, float] = field(default_factory=dict)
    """Monotonic start of each relation's last good list in this process."""
    replay: dict[str, list[Event]] = field(default_factory=dict)
    """Events of relations being listed: applied again once the list is in."""
    uncovered: set[str] = field(default_factory=set)
    """Relations whose known state may miss events until they are listed again."""


class Relist(Protocol):
    """Run a relation now; ``relist``: list it from the CMDB first (the watcher's request)."""

    def __call__(self, rel: RelationSettings, *, relist: bool = ..., reason: str = ...) -> None: ...


@dataclass
class StreamParts:
    """What every object's stream shares: the CMDB, the state, the clocks, the callbacks."""

    client: CmdbClient
    store: StateStore
    book: ListBook
    request: Relist
    deliver: Callable[[ObjectWatch, RelationSettings, list[Event]], None]
    """One relation's events, to apply (:meth:`syncd.informer.drift.DriftRepair.apply`)."""
    observer: WatchObserver | None = None
    timings: WatchTimings = field(default_factory=WatchTimings)
    catch_up: float = 0.2
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


class ObjectStream:
    """One watched object's event stream; it reports through the callbacks of its parts."""

    def __init__(self, watch: ObjectWatch, parts: StreamParts) -> None:
        self.watch = watch
        self.parts = parts

    async def from_now(self, failures: int = 0) -> bool:
        """Take the "from now" cursor; True when got. Relations listed before it relist."""
        watch = self.watch
        await self._paced()
        began = self.parts.monotonic()
        # Unfiltered, "now" is the newest event of any object; filtered, a newest event
        # of another object gives the no-event cursor: every event kept (hours) again.
        answer = await self.parts.client.watch_associations(None, None)
        if answer.verdict is not Verdict.OK:  # e.g. allowed to watch this object only
            await self._paced()
            answer = await self.parts.client.watch_associations(watch.bk_obj_id, None)
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
            listed = self.parts.book.listed_at.get(rel.name)
            if rel.name in self.parts.book.began:
                continue  # listing now: list_finished compares its start
            if listed is None and not self.parts.store.has_resynced(rel.name):
                continue  # its first cycle lists it, after this cursor
            if listed is None or listed < began:
                self.parts.request(rel, relist=True, reason=watch.lost)
        self.keep_cursor()
        return True

    async def _paced(self, after: float | None = None) -> None:
        """Wait for the object's next request slot, then take it: whatever the CMDB
        answers (errors, gaps, expired cursors), one request per ``after`` seconds (by
        default the pace)."""
        watch = self.watch
        wait = watch.next_request - self.parts.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        pace = self.parts.timings.pace if after is None else after
        watch.next_request = self.parts.monotonic() + pace

    def keep_cursor(self) -> None:
        """Store the cursor while every relation of the object is in step with it."""
        watch = self.watch
        if watch.cursor is None:
            return
        for rel in watch.relations:
            if rel.name in self.parts.book.uncovered or not self.parts.store.has_resynced(rel.name):
                return
        self.parts.store.meta.set_watch_cursor(
            watch.bk_obj_id, watch.cursor, self.parts.client.settings.tenant_id
        )

    def resume(self) -> None:
        """Go on from the stored cursor if every relation's state goes with it."""
        watch = self.watch
        stored = self.parts.store.meta.watch_cursor(
            watch.bk_obj_id, self.parts.client.settings.tenant_id
        )
        if stored is not None and all(
            self.parts.store.has_resynced(r.name) for r in watch.relations
        ):
            watch.cursor = stored

    async def follow(self) -> None:
        """One object's watch loop; ends only when cancelled. Whatever goes wrong in a
        turn (the state file, a bug) is logged and the watch starts over from now: the
        relations are listed again, so nothing is lost."""
        watch = self.watch
        failures = 0
        while True:
            try:
                failures = await self._turn(failures)
            except Exception as exc:
                failures += 1
                log.error(
                    "watch_failed",
                    object=watch.bk_obj_id,
                    error=repr(exc),
                    traceback="".join(traceback.format_exception(exc)).strip(),
                )
                self.lost("gap")
                await asyncio.sleep(self.parts.timings.backoff(failures))

    async def _turn(self, failures: int) -> int:
        """One watch request and what follows from it; the failures so far."""
        watch = self.watch
        if watch.cursor is None:
            watch.state = "starting"
            wait = watch.restart_due - self.parts.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if await self.from_now(failures):
                return 0
            await asyncio.sleep(self.parts.timings.backoff(failures + 1))
            return failures + 1
        await self._paced()
        watch.state = "watching"
        answer = await self.parts.client.watch_associations(watch.bk_obj_id, watch.cursor)
        if answer.verdict is not Verdict.OK:
            if answer.code == EXPIRED:
                log.warning("watch_expired", object=watch.bk_obj_id, error=answer.error)
                self.lost("expired")
                return 0
            watch.state = "failing"
            delay = self.parts.timings.backoff(failures + 1)
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
            self.lost("gap")
            return 0
        if failures:
            log.info("watch_recovered", object=watch.bk_obj_id, failures=failures)
        watch.restarts = 0
        self._received(events)
        watch.cursor = cursor
        self.keep_cursor()
        if entries >= EVENT_STEP:  # more are waiting: the next request may go sooner
            watch.next_request = self.parts.monotonic() + self.parts.catch_up
        return 0

    def lost(self, reason: str) -> None:
        """The cursor cannot be gone on from: start from now; every relation relists."""
        watch = self.watch
        watch.cursor = None
        watch.lost = reason
        watch.since = math.inf  # every relation listed before the next cursor relists
        self.parts.store.meta.set_watch_cursor(
            watch.bk_obj_id, None, self.parts.client.settings.tenant_id
        )
        for rel in watch.relations:
            self.parts.book.listed_at.pop(rel.name, None)
        pause = self.parts.timings.restart_pause(watch.restarts)
        watch.restarts += 1
        watch.restart_due = self.parts.monotonic() + pause
        log.info("watch_restarting", object=watch.bk_obj_id, reason=reason, restart_in=pause)

    def _received(self, events: list[Event]) -> None:
        watch = self.watch
        now = self.parts.clock()
        watch.last_answer = self.parts.monotonic()
        events = watch.echoes.fresh(events)  # one change, one event: counted and applied once
        by_type = Counter(e.type for e in events)
        watch.events.update(by_type)
        lag = 0.0
        if events:
            stamped = event_time(events[-1].cursor)
            lag = max(0.0, now - stamped) if stamped is not None else 0.0
        watch.lag = lag
        if self.parts.observer is not None:
            for kind, n in by_type.items():
                self.parts.observer.record_watch_events(watch.bk_obj_id, kind, n)
            self.parts.observer.set_watch_lag(watch.bk_obj_id, lag)
        for rel in watch.relations:
            mine = [
                e
                for e in events
                if e.bk_obj_asst_id == rel.bk_obj_asst_id and e.bk_obj_id in ("", rel.bk_obj_id)
            ]
            if not mine:
                continue
            if rel.name in self.parts.book.replay:
                self.parts.book.replay[rel.name].extend(mine)
            self.parts.deliver(watch, rel, mine)
