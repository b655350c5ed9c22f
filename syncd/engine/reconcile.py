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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import RelationSettings, Settings
from syncd.core.diff import Sides
from syncd.core.pairs import PairKey
from syncd.core.plan import MoveInputs, RelationPlan, plan
from syncd.core.uncertain import CERTAIN, Uncertainty, certainly_absent
from syncd.engine.apply import Applier
from syncd.engine.change import Change, ChangeApplier, ChangeUncertain
from syncd.engine.desired import Desired, SourceFactory, make_source
from syncd.engine.failures import report_failure
from syncd.engine.guards import Guards
from syncd.engine.identity import IdentityCheck, check_identities
from syncd.engine.known import Known
from syncd.engine.moving import (
    HeldLines,
    blocking_pairs,
    clear_for_moves,
    log_blocked,
    log_holds,
)
from syncd.engine.reader import DesiredReader
from syncd.engine.report import CycleReport, RelationReport, fill_report, marked
from syncd.engine.resolver import KeyResolver
from syncd.engine.sendstep import SendBatch
from syncd.engine.workqueue import Work, WorkQueue
from syncd.sources.base import SourceError
from syncd.state import StateError, StateStore
from syncd.support.log import relation_context
from syncd.support.tasks import first_error, together

log = structlog.get_logger("syncd")

SOURCE_FAILED = "the source failed this cycle"


@dataclass(frozen=True)
class ChangeWork(Work):
    """A pushed change of one relation, applied in the relation's turn on the queue.

    It merges with nothing: a change waits behind the other requests of its relation and
    is applied on its own (its caller waits for its ``change`` report, or its
    ChangeUncertain, to ask for a full read)."""

    change: Change = field(default_factory=Change)

    def merged(self, later: Work) -> Work | None:
        return None


class EngineObserver(Protocol):
    """Where the reconciler reports counts (the metrics registry implements this)."""

    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None: ...
    def record_isolation(self, relation: str, requests: int) -> None: ...
    def set_relation_gauges(self, relation: str, desired: int, known: int, failed: int) -> None: ...
    def set_kept_uncertain(self, relation: str, pairs: int) -> None: ...
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
        self.known = Known(client, store, clock)
        self.held_lines = HeldLines()
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
        (syncd.informer.watch) asks when a pair disappears; pushed changes update it."""
        self.last_uncertainty: dict[str, Uncertainty] = {}
        """What the last read left open (:mod:`syncd.core.uncertain`)."""
        self.blocking: dict[str, set[PairKey]] = {}
        """Each relation's known pairs that hold a desired pair back (a mapping conflict):
        the watch runs the relation at once when one of them is deleted."""
        self.changes = ChangeApplier(
            self.known,
            self.apply,
            self.resolver,
            batch_size=settings.cmdb.batch_size,
            last_desired=self.last_desired,
            uncertainty=self.last_uncertainty,
            may_delete=self.may_delete,
            source_factory=source_factory,
            clock=clock,
        )
        hook = settings.hooks.netbox
        self.changes.prune_at_once = hook.prune_at_once if hook is not None else True
        self.desired.on_read = self.changes.full_read
        self.queue: WorkQueue[RelationReport] = WorkQueue(self._work)
        """Every run of a relation goes through it, whoever asked (a cycle, the watch, a
        push, a pushed change): one run of a relation at a time, requests meanwhile merged
        into the next."""
        self.identities: IdentityCheck | None = None
        """What the state was found to describe (syncd.engine.identity), once checked."""

    def may_delete(self, name: str, key: PairKey) -> bool:
        """For a path that deletes one pair outside a cycle (a webhook, the watch): only a
        pair the last read certainly does not state; nothing before a relation was read."""
        desired = self.last_desired.get(name)
        if desired is None:
            return False
        return certainly_absent(key, desired, self.last_uncertainty.get(name, CERTAIN))

    @property
    def stopping(self) -> bool:
        return self.apply.closed.is_set()

    def stop(self) -> None:
        """Start no new request; those in flight finish."""
        self.apply.closed.set()
        self.client.stopping = True

    # -- a cycle ------------------------------------------------------------------

    async def cycle(
        self,
        *,
        resync: bool = False,
        only: Collection[str] | None = None,
        lift_guards: bool | None = None,
    ) -> CycleReport:
        """One pass over every relation (or, for a push, over ``only`` those named),
        concurrently, sharing the client's limits. A resync always covers every one.
        ``lift_guards`` (default: with a resync) is the operator's word that the sources'
        current sizes are meant: the empty-source and shrink guards start over from them."""
        lift = resync if lift_guards is None else lift_guards
        started = time.monotonic()
        self.cycles += 1
        self.apply.begin_cycle(resync=resync)
        relations = self.settings.relations
        if only is not None and not resync:
            relations = [r for r in relations if r.name in only]
        if resync:
            self.desired.forget()
        runs = [self.queue.add(Work(r.name, resync, lift)) for r in relations]
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
        """Run one relation outside the cycle, through the queue; its report (a relist the
        watch asks for lifts no guard)."""
        return await self.queue.add(Work(rel.name, resync))

    async def apply_change(self, rel: RelationSettings, change: Change) -> RelationReport:
        """A pushed change of ``rel`` (syncd.engine.change), in its turn on the queue, error
        boundary and log context; ``change`` line at the end. Raises ChangeUncertain when
        only a full read can say (the caller asks for one); any other failure is in the
        report."""
        return await self.queue.add(ChangeWork(rel.name, change=change))

    async def _work(self, work: Work) -> RelationReport:
        """The queue's handler: one run (or one pushed change) of the relation named."""
        rel = next(r for r in self.settings.relations if r.name == work.key)
        if isinstance(work, ChangeWork):
            return await self._apply_change(rel, work.change)
        return await self.run_relation(rel, work.resync, work.lift_guards)

    async def _apply_change(self, rel: RelationSettings, change: Change) -> RelationReport:
        with relation_context(rel.name, rel.bk_obj_asst_id, self.cycles):
            report = RelationReport(rel.name)
            try:
                self.check_identities()
                await self.changes.apply(rel, change, report)
            except ChangeUncertain:
                raise
            except Exception as group:
                report.error = report_failure(rel, first_error(group))
            report.duration = time.monotonic() - report.started
            report.known = self._known_count(rel.name)
            log.info(
                "change",
                cables=sorted(change.cables)[:20],
                devices=sorted(change.devices)[:20],
                **report.log_fields(),
            )
            return report

    async def run_relation(
        self, rel: RelationSettings, resync: bool, lift_guards: bool = False
    ) -> RelationReport:
        """One relation inside its error boundary and its bound log context (only the
        queue calls this: it keeps two runs of a relation apart)."""
        with relation_context(rel.name, rel.bk_obj_asst_id, self.cycles):
            report = RelationReport(rel.name)
            try:
                await self.run(rel, report, resync, lift_guards)
            except Exception as group:
                report.error = report_failure(rel, first_error(group))
            report.duration = time.monotonic() - report.started
            report.known = self._known_count(rel.name)
            log.info("relation", **report.log_fields())
            if self.observer is not None:
                failing = report.failed + report.held
                self.observer.set_relation_gauges(rel.name, report.desired, report.known, failing)
                self.observer.set_kept_uncertain(rel.name, report.kept_uncertain)
                if report.error is None:
                    self.observer.mark_success(rel.name)
            return report

    def check_identities(self) -> None:
        """Before any relation touches the state: is it still about what it describes?"""
        if self.identities is None:
            self.identities = check_identities(self.store, self.settings.relations, write=True)

    def _known_count(self, name: str) -> int:
        """The mirror's count, or the state's when the mirror was never loaded."""
        try:
            return self.known.count(name) or self.known.stored_count(name)
        except StateError:
            return 0

    async def run(
        self, rel: RelationSettings, report: RelationReport, resync: bool, lift: bool = False
    ) -> None:
        """observe -> pull -> diff -> batch -> send/record -> fill ids -> prune."""
        self.check_identities()
        if lift:
            # The operator's word; a relist the watch asks for is not: only a person lifts
            # a guard.
            self.guards.accept_any_size(rel)
        known, desired = await self._observe_and_pull(rel, report, resync)
        now = self.clock()
        decided = self.decide(rel, desired, known, now, self.known.take_sides(rel.name))
        self.blocking[rel.name] = {
            old
            for key in decided.held.keys() & decided.blockers.keys()
            for old in decided.blockers[key]
        }
        fill_report(report, desired, decided)
        self._commit(rel, desired, decided, now)
        report.mark("planned")
        if self.stopping:
            return
        await self._create(rel, decided, report)
        if self.stopping:
            return
        await self.known.fill_association_ids(rel)
        await self.known.learn_blockers(rel, report.conflicts)
        if decided.prune.delete and not self.stopping:
            await self.apply.delete(rel, decided.prune.delete, report)
            report.mark("pruned")

    async def _observe_and_pull(
        self, rel: RelationSettings, report: RelationReport, resync: bool
    ) -> tuple[set[PairKey], Desired]:
        """The known pairs and the source's, read together; a failed read blocks pruning."""
        try:
            read = marked(self.desired.read(rel, self.guards.last_sizes(rel)), report, "read")
            if not resync and not self.store.has_resynced(rel.name):
                # A first sync sends (nearly) everything: check its hosts during the resync.
                read = self.apply.read_then_ask_hosts(rel, read)
            known, report.resynced, desired = await self.known.observe_beside(
                rel, read, resync=resync
            )
            report.mark("observed")
        except (SourceError, CmdbError):
            if rel.prune.enabled:
                report.prune_blocked = SOURCE_FAILED
                log.warning("prune_blocked", reason=SOURCE_FAILED)
            raise
        self.last_desired[rel.name] = desired.pairs
        self.last_uncertainty[rel.name] = desired.uncertainty
        return known, desired

    def _commit(
        self, rel: RelationSettings, desired: Desired, decided: RelationPlan, now: float
    ) -> None:
        """What this cycle observed, written (daemon path only; ``syncd plan`` stops before)."""
        self.guards.commit(rel, desired, decided, now)
        log_holds(decided)
        holds = self.held_lines.due(rel.name, decided, now)
        if holds:
            ids = self.known.association_ids(rel.name, blocking_pairs(decided, holds))
            log_blocked(decided, holds, ids)

    async def _create(
        self, rel: RelationSettings, decided: RelationPlan, report: RelationReport
    ) -> None:
        """The creates, after clearing the way for moves."""
        batches, replaces = decided.batches, None
        if decided.moves:
            batches, replaces = await clear_for_moves(self.apply, rel, decided, report)
        try:
            await self.apply.create(rel, batches, report, replaces=replaces)
        finally:
            report.pending -= report.created + report.exists

    def decide(
        self,
        rel: RelationSettings,
        desired: Desired,
        known: set[int],
        now: float,
        sides: Sides | None = None,
    ) -> RelationPlan:
        """The pure plan, over what the state says about held, owned and absent pairs."""
        name = rel.name
        seen = self.guards.seen(rel, desired)
        prune = self.guards.prune_inputs(rel, desired, seen)
        moves = MoveInputs(
            rel.moves.guards(),
            (lambda: prune.owned) if prune is not None else lambda: self.guards.owned(name),
            seen.blocked,
        )
        decided = plan(
            name,
            desired.pairs,
            known,
            self.known.held_back(name, now),
            mapping=self.known.mapping(name),
            batch_size=self.settings.cmdb.batch_size,
            now=now,
            prune=prune,
            moves=moves,
            uncertainty=desired.uncertainty,
            sides=sides,
        )
        decided.guard = seen.blocked
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
