"""The reconcile loop: each cycle, every relation goes observe -> pull -> diff -> batch ->
send/record -> fill ids -> prune.

Level-triggered like a Kubernetes controller: each cycle compares the whole desired
state with the whole known state and converges, so nothing depends on having seen an
event. Known state is written as each answer arrives, so a crash loses at most the
answers in flight, and those pairs come back as "already exists" on the next try,
never as doubles. Each stage has one owner: :mod:`syncd.engine.known` (known state),
:mod:`syncd.engine.desired` (the source), :mod:`syncd.core.plan` (decisions, pure),
:mod:`syncd.engine.apply` (requests and their answers).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Collection
from typing import Protocol

import structlog

from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import RelationSettings, Settings
from syncd.core.answer import Verdict
from syncd.core.pairs import PairKey
from syncd.core.plan import RelationPlan, plan
from syncd.engine.apply import Applier, SendBatch
from syncd.engine.desired import Desired, DesiredReader, SourceFactory, make_source
from syncd.engine.guards import Guards
from syncd.engine.known import Known, RelationRefused
from syncd.engine.report import CycleReport, RelationReport
from syncd.engine.resolver import KeyResolver
from syncd.engine.workqueue import Work, WorkQueue
from syncd.sources.base import SourceError
from syncd.state import StateError, StateStore
from syncd.support.log import relation_context
from syncd.support.tasks import first_error, together

log = structlog.get_logger("syncd")

EXPECTED = (SourceError, CmdbError, RelationRefused, StateError)
"""Failures a relation's cycle reports in one line; anything else also gets a traceback."""
SOURCE_FAILED = "the source failed this cycle"


class EngineObserver(Protocol):
    """Where the reconciler reports counts (the metrics registry implements this)."""

    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None: ...
    def record_isolation(self, relation: str, requests: int) -> None: ...
    def set_relation_gauges(self, relation: str, desired: int, known: int, failed: int) -> None: ...
    def mark_success(self, relation: str) -> None: ...
    def record_cycle(self, seconds: float, *, ok: bool = True) -> None: ...


class Reconciler:
    """Runs cycles over the stages; holds nothing but them and the cycle count."""

    def __init__(
        self,
        settings: Settings,
        client: CmdbClient,
        store: StateStore,
        *,
        observer: EngineObserver | None = None,
        clock: Callable[[], float] = time.time,
        source_factory: SourceFactory = make_source,
        send: SendBatch | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.observer = observer
        self.clock = clock
        self.guards = Guards(store)
        """Source sizes, prune baselines and absence marks: the guards' memory."""
        self.known = Known(client, store, clock, guards=self.guards)
        self.resolver = KeyResolver(client, ttl=settings.sync.key_cache_ttl)
        self.desired = DesiredReader(
            self.resolver,
            empty_source_guard=settings.sync.empty_source_guard,
            source_factory=source_factory,
        )
        self.apply = Applier(client, self.known, settings.sync, observer=observer, send=send)
        self.cycles = 0
        self.last_desired: dict[str, set[PairKey]] = {}
        """Each relation's last source read (the same set, not a copy): what the watch
        (syncd.informer.watch) asks when a pair disappears."""
        self.queue: WorkQueue[RelationReport] = WorkQueue(self._work)
        """Every run of a relation goes through it, whoever asked (a cycle, the watch, a
        push): one run of a relation at a time, requests meanwhile merged into the next."""

    @property
    def stopping(self) -> bool:
        return self.apply.closed.is_set()

    def stop(self) -> None:
        """Start no new request; those in flight finish."""
        self.apply.closed.set()
        self.client.stopping = True

    # -- a cycle ------------------------------------------------------------------

    async def cycle(
        self, *, resync: bool = False, only: Collection[str] | None = None
    ) -> CycleReport:
        """One pass over every relation (or, for a push, over ``only`` those named),
        concurrently, sharing the client's limits. A resync always covers every one."""
        started = time.monotonic()
        self.cycles += 1
        self.apply.begin_cycle(resync=resync)
        relations = self.settings.relations
        if only is not None and not resync:
            relations = [r for r in relations if r.name in only]
        if resync:
            self.desired.forget()
        runs = [self.queue.add(Work(r.name, resync)) for r in relations]
        try:
            reports = await asyncio.gather(*runs)
        except asyncio.CancelledError:
            self.queue.cancel(r.name for r in relations)  # as a task group would
            raise
        report = CycleReport(list(reports), time.monotonic() - started)
        report.partial = len(relations) < len(self.settings.relations)
        if self.observer is not None:
            self.observer.record_cycle(report.duration, ok=report.ok)
        scope = {"only": [r.name for r in relations]} if report.partial else {}
        log.info("cycle", cycle=self.cycles, **report.summary(), stopped=self.stopping, **scope)
        return report

    async def run_now(self, rel: RelationSettings, *, resync: bool = False) -> RelationReport:
        """Run one relation outside the cycle, through the queue; its report."""
        return await self.queue.add(Work(rel.name, resync))

    async def _work(self, work: Work) -> RelationReport:
        """The queue's handler: one run of the relation the work names."""
        rel = next(r for r in self.settings.relations if r.name == work.key)
        return await self.run_relation(rel, work.resync)

    async def run_relation(self, rel: RelationSettings, resync: bool) -> RelationReport:
        """One relation inside its error boundary and its bound log context (only the
        queue calls this: it keeps two runs of a relation apart)."""
        with relation_context(rel.name, rel.bk_obj_asst_id, self.cycles):
            report = RelationReport(rel.name)
            started = time.monotonic()
            try:
                await self.run(rel, report, resync)
            except Exception as group:
                report.error = _report_failure(rel, first_error(group))
            report.duration = time.monotonic() - started
            report.known = self._known_count(rel.name)
            log.info("relation", **report.log_fields())
            if self.observer is not None:
                failing = report.failed + report.held
                self.observer.set_relation_gauges(rel.name, report.desired, report.known, failing)
                if report.error is None:
                    self.observer.mark_success(rel.name)
            return report

    def _known_count(self, name: str) -> int:
        """The mirror's count, or the state's when the mirror was never loaded."""
        try:
            return self.known.count(name) or self.known.stored_count(name)
        except StateError:
            return 0

    async def run(self, rel: RelationSettings, report: RelationReport, resync: bool) -> None:
        """observe -> pull -> diff -> batch -> send/record -> fill ids -> prune."""
        if resync:
            self.guards.accept_any_size(rel)
        known, desired = await self._observe_and_pull(rel, report, resync)
        now = self.clock()
        decided = self.decide(rel, desired, known, now)
        _fill_report(report, desired, decided)
        self.guards.commit(rel, desired, decided, now)
        if self.stopping:
            return
        await self._create(rel, decided, report)
        if self.stopping:
            return
        await self.known.fill_association_ids(rel)
        if decided.prune.delete and not self.stopping:
            await self.apply.delete(rel, decided.prune.delete, report)

    async def _observe_and_pull(
        self, rel: RelationSettings, report: RelationReport, resync: bool
    ) -> tuple[set[PairKey], Desired]:
        """The known pairs and the source's, read together; a failed read blocks pruning."""
        try:
            (known, report.resynced), desired = await together(
                self.known.observe(rel, resync=resync),
                self.desired.read(rel, self.guards.last_sizes(rel)),
            )
        except (SourceError, CmdbError):
            if rel.prune.enabled:
                report.prune_blocked = SOURCE_FAILED
                log.warning("prune_blocked", reason=SOURCE_FAILED)
            raise
        self.last_desired[rel.name] = desired.pairs
        return known, desired

    async def _create(
        self, rel: RelationSettings, decided: RelationPlan, report: RelationReport
    ) -> None:
        try:
            await self.apply.create(rel, decided.batches, report)
        finally:
            report.pending -= report.created + report.exists

    def decide(
        self, rel: RelationSettings, desired: Desired, known: set[int], now: float
    ) -> RelationPlan:
        """The pure plan, over what the state says about held, owned and absent pairs."""
        name = rel.name
        decided = plan(
            name,
            desired.pairs,
            known,
            self.known.held_back(name, now),
            mapping=self.known.mapping(name),
            batch_size=self.settings.cmdb.batch_size,
            now=now,
            prune=self.guards.prune_inputs(rel, desired),
        )
        decided.bad_records = desired.bad_records
        decided.unresolved = list(desired.unresolved)
        decided.source_counts = dict(desired.source_counts)
        decided.sources = list(desired.sources)
        return decided

    async def plan_relation(self, rel: RelationSettings) -> RelationPlan:
        """What a cycle would do now against a fresh read of the CMDB; changes nothing."""
        with relation_context(rel.name, rel.bk_obj_asst_id, self.cycles):
            known, desired = await together(
                self.known.read_cmdb(rel),
                self.desired.read(rel, self.guards.last_sizes(rel)),
            )
            return self.decide(rel, desired, known, self.clock())


def _fill_report(report: RelationReport, desired: Desired, decided: RelationPlan) -> None:
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


def _report_failure(rel: RelationSettings, exc: BaseException) -> str:
    """Log a relation's failure in one line; the report's error text."""
    if isinstance(exc, CmdbError) and exc.answer.verdict is Verdict.RELATION:
        answer = exc.answer
        what = str(exc).removesuffix(f" ({answer.hint})")
        exc = RelationRefused(
            what, answer.hint, permission=answer.permission, request_id=answer.request_id
        )
    if isinstance(exc, RelationRefused):
        log.error(
            "relation_refused",
            error=exc.error,
            fix=exc.fix,
            permission=exc.permission,
            request_id=exc.request_id,
        )
        return str(exc)
    if isinstance(exc, EXPECTED):
        log.error("relation_failed", error=str(exc))
        return str(exc)
    trace = "".join(traceback.format_exception(exc)).strip()
    log.error("relation_failed", error=repr(exc), traceback=trace)
    return repr(exc)
