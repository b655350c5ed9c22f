"""The watch: after a relation's list, follow the CMDB's association events like an informer.

A Kubernetes informer lists, then watches from where the list began, and relists on a
timer. Here the list is the relation's resync (:meth:`syncd.known.Known.resync`) and
the watch is bk-cmdb's ``resource_watch`` for ``inst_asst``, one long poll per watched
object (``bk_filter.bk_sub_resource`` = the relations' ``bk_obj_id``), through the same
client, rate budget and retries as every read, on connections of its own so a held
request never takes a writer's slot.

What an event changes:

- a known pair **deleted** by someone: forgotten; if the source still wants it, one
  ``drift`` line and the relation runs now, which re-creates it (counted as
  ``syncd_pairs_total{outcome="repaired"}``);
- a pair **created** by someone: known (not owned, so never pruned), never sent. Applied
  :data:`ADOPT_GRACE` seconds after it arrives, by which time syncd's own creates have
  been recorded from their answers and are not mistaken for someone else's;
- events of other model associations are ignored.

No event may be lost between a list and the watch: the watch takes its "from now"
cursor before the first list (start-up waits for it), events arriving during a list are
applied again on top of it, and the cursor is kept in the state so a restart goes on
where it stopped. A relation listed before the watch's cursor was taken, an expired
cursor (1103007) or an answer without a cursor is a gap: the relation is listed again.
``sync.relist_interval`` relists anyway.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import structlog

from syncd.answer import Verdict
from syncd.config import RelationSettings, Settings
from syncd.pairs import PairKey, pack
from syncd.reconcile import Reconciler

log = structlog.get_logger("syncd.watch")

EXPIRED = 1103007
"""``Event chain node not exist``: the cursor is older than the CMDB keeps events."""
EVENT_STEP = 200
"""Events in a full answer (bk-cmdb's ``eventStep``): more are waiting."""
PACE = 1.0
"""Seconds between watch requests unless the last answer was full: events coming one by
one (syncd's own creates among them) cost at most one read a second per object."""
CATCH_UP_SHARE = 0.05
"""After a full answer (more events waiting, e.g. syncd's own creates of a large first
sync), the watch asks again after ``1 / (share * rate_limit)`` seconds, 0.2 s at least:
it takes at most 5% of the budget it shares with the writes on the ESB."""
ADOPT_GRACE = 1.0
"""Seconds a create of an unknown pair waits before it is taken as someone else's."""
RETRY_BASE = 1.0
RETRY_CAP = 30.0
"""Pause after a failed watch request: doubles from RETRY_BASE up to RETRY_CAP."""
PRIME_TIMEOUT = 10.0
"""Start-up waits at most this long for the "from now" cursors."""


# -- the pure part: answers and events ---------------------------------------------


class WatchGap(Exception):
    """An answer syncd cannot go on from (no cursor): events may have been missed."""


class Event(NamedTuple):
    """One ``inst_asst`` event, as far as syncd needs it."""

    type: str
    """``create`` or ``delete``."""
    cursor: str
    bk_obj_id: str
    bk_obj_asst_id: str
    src: int
    dst: int
    association_id: int
    by: str | None
    """Who made the change, when the event says so (bk-cmdb's inst_asst events do not)."""

    @property
    def key(self) -> PairKey:
        return pack(self.src, self.dst)


def event_time(cursor: str) -> float | None:
    """The cluster time (Unix seconds) in a bk-cmdb event cursor, if it is one."""
    try:
        parts = base64.b64decode(cursor, validate=True).decode().split("\r")
        return float(parts[4]) if len(parts) >= 6 and parts[1] == "13" else None
    except (ValueError, UnicodeDecodeError):
        return None


def parse_event(raw: object) -> Event | None:
    """One entry of ``bk_events``; None for an entry that is no create or delete."""
    if not isinstance(raw, dict) or raw.get("bk_event_type") not in ("create", "delete"):
        return None
    detail = raw.get("bk_detail")
    cursor = raw.get("bk_cursor")
    if not isinstance(detail, dict) or not isinstance(cursor, str):
        return None
    try:
        by = detail.get("bk_updated_by") or detail.get("bk_created_by") or detail.get("operator")
        return Event(
            str(raw["bk_event_type"]),
            cursor,
            str(detail.get("bk_obj_id", "")),
            str(detail["bk_obj_asst_id"]),
            int(detail["bk_inst_id"]),
            int(detail["bk_asst_inst_id"]),
            int(detail.get("id") or 0),
            str(by) if by else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def parse_answer(data: object) -> tuple[list[Event], str, int]:
    """(events, the cursor to go on from, entries in the answer) of one watch answer."""
    entries = data.get("bk_events") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise WatchGap("answer has no bk_events")
    last = entries[-1].get("bk_cursor") if isinstance(entries[-1], dict) else None
    if not isinstance(last, str) or not last:
        raise WatchGap("answer's last event has no bk_cursor")
    watched = isinstance(data, dict) and data.get("bk_watched") is True
    events = [e for e in map(parse_event, entries) if e is not None] if watched else []
    return events, last, len(entries) if watched else 0


def last_wins(events: Iterable[Event]) -> dict[PairKey, Event]:
    """Each pair's last event, in the order of those last events: what a pair is now."""
    final: dict[PairKey, Event] = {}
    for event in events:
        final.pop(event.key, None)
        final[event.key] = event
    return final


# -- the I/O part -----------------------------------------------------------------


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
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = engine.client
        self.store = engine.store
        self.known = engine.known
        self.observer = observer
        self.clock = clock
        self.monotonic = monotonic
        by_object: dict[str, list[RelationSettings]] = {}
        for rel in settings.relations:
            by_object.setdefault(rel.bk_obj_id, []).append(rel)
        self.objects = {obj: ObjectWatch(obj, rels) for obj, rels in by_object.items()}
        self._list_began: dict[str, float] = {}
        self._listed_at: dict[str, float] = {}
        """Monotonic start of each relation's last good list in this process."""
        self._replay: dict[str, list[Event]] = {}
        """Events of relations being listed: applied again once the list is in."""
        self.drifted: dict[str, set[PairKey]] = {}
        """Pairs deleted behind syncd's back that the source wants: to be re-created."""
        self.repaired: Counter[str] = Counter()
        self.relists: Counter[str] = Counter()
        self._queue: dict[str, bool] = {}
        """Relations to run now -> whether to list them again first."""
        self._queued = asyncio.Event()
        self._running: set[str] = set()
        self._catch_up = max(0.2, 1 / (CATCH_UP_SHARE * settings.cmdb.rate_limit))
        self._uncovered: set[str] = set()
        """Relations whose known state may miss events until they are listed again."""

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
            self._apply(self.objects[rel.bk_obj_id], rel, replay)
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
            self.store.set_watch_cursor(rel.bk_obj_id, None)
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
        self._count_repaired(rel)
        if relist:
            self._keep_cursor(self.objects[rel.bk_obj_id])

    def _count_repaired(self, rel: RelationSettings) -> None:
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

    # -- following one object --------------------------------------------------------

    async def _from_now(self, watch: ObjectWatch, failures: int = 0) -> bool:
        """Take the "from now" cursor; True when got. Relations listed before it relist."""
        began = self.monotonic()
        # Unfiltered, "now" is the newest event of any object; filtered, a newest event
        # of another object gives the no-event cursor: every event kept (hours) again.
        answer = await self.client.watch_associations(None, None)
        if answer.verdict is not Verdict.OK:  # e.g. allowed to watch this object only
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

    def _keep_cursor(self, watch: ObjectWatch) -> None:
        """Store the cursor while every relation of the object is in step with it."""
        if watch.cursor is None:
            return
        for rel in watch.relations:
            if rel.name in self._uncovered or not self.store.has_resynced(rel.name):
                return
        self.store.set_watch_cursor(watch.bk_obj_id, watch.cursor)

    def _resume(self, watch: ObjectWatch) -> None:
        """Go on from the stored cursor if every relation's state goes with it."""
        stored = self.store.watch_cursor(watch.bk_obj_id)
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
            if await self._from_now(watch, failures):
                return 0
            await asyncio.sleep(_backoff(failures + 1))
            return failures + 1
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
        self._received(watch, events)
        watch.cursor = cursor
        self._keep_cursor(watch)
        await asyncio.sleep(PACE if entries < EVENT_STEP else self._catch_up)
        return 0

    def _lost(self, watch: ObjectWatch, reason: str) -> None:
        """The cursor cannot be gone on from: start from now; every relation relists."""
        watch.cursor = None
        watch.lost = reason
        watch.since = math.inf  # every relation listed before the next cursor relists
        self.store.set_watch_cursor(watch.bk_obj_id, None)
        for rel in watch.relations:
            self._listed_at.pop(rel.name, None)
        log.info("watch_restarting", object=watch.bk_obj_id, reason=reason)

    def _received(self, watch: ObjectWatch, events: list[Event]) -> None:
        now = self.clock()
        watch.last_answer = self.monotonic()
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
            self._apply(watch, rel, mine)

    def _apply(self, watch: ObjectWatch, rel: RelationSettings, events: list[Event]) -> None:
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
            loop.call_later(ADOPT_GRACE, self._adopt_later, watch, rel, creates)

    def _drifted(self, rel: RelationSettings, deleted: list[Event]) -> None:
        desired = self.engine.last_desired.get(rel.name)
        drifted = self.drifted.setdefault(rel.name, set())
        wanted = 0
        for event in deleted:
            if desired is not None and event.key not in desired:
                continue
            wanted += 1
            if event.key in drifted:
                continue
            drifted.add(event.key)
            log.warning(
                "drift",
                relation=rel.name,
                bk_obj_asst_id=rel.bk_obj_asst_id,
                change="deleted",
                bk_inst_id=event.src,
                bk_asst_inst_id=event.dst,
                association_id=event.association_id,
                at=_iso(event_time(event.cursor)),
                by=event.by,
                action="recreate",
            )
        if wanted:
            self.request(rel)

    def _adopt_later(
        self, watch: ObjectWatch, rel: RelationSettings, keys: list[tuple[str, PairKey]]
    ) -> None:
        try:
            self._adopt(watch, rel, keys)
        except Exception as exc:  # a callback: nobody else would see it
            log.error("watch_adopt_failed", relation=rel.name, error=repr(exc))
            self._lost(watch, "gap")

    def _adopt(
        self, watch: ObjectWatch, rel: RelationSettings, keys: list[tuple[str, PairKey]]
    ) -> None:
        """Creates that waited out the grace and are still unknown: someone else's."""
        due = [watch.pending.pop(k) for k in keys if k in watch.pending]
        if not due:
            return
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
            log.info(
                "drift",
                relation=rel.name,
                bk_obj_asst_id=rel.bk_obj_asst_id,
                change="created",
                bk_inst_id=event.src,
                bk_asst_inst_id=event.dst,
                association_id=event.association_id,
                at=_iso(event_time(event.cursor)),
                by=event.by,
                action="known",
            )

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


def _backoff(failures: int) -> float:
    return float(min(RETRY_CAP, RETRY_BASE * 2 ** min(failures - 1, 10)))


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
