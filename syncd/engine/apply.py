"""Carry out a plan: send the creates, record each answer, delete what is pruned.

The send step is one narrow seam, :data:`syncd.engine.sendstep.SendBatch`: a batch of
details in, one outcome per detail out (:class:`syncd.core.outcome.BatchOutcome`).
Whatever happens inside (one request, or a request split to isolate a refused
detail) the rest of the cycle only sees the outcome, records it and logs its lines.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import structlog

from syncd.cmdb.apis import PAGE_LIMIT
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import RelationSettings, SyncSettings
from syncd.core.answer import Answer, Verdict
from syncd.core.backoff import pair_next_attempt
from syncd.core.details import IndexKind
from syncd.core.outcome import BatchOutcome, whole_failure
from syncd.core.pairs import PairKey, ids_of, pack, unpack_list
from syncd.engine.known import D, Known, RelationRefused
from syncd.engine.moving import Replaces, count_moves, delete_fields, mark_moves
from syncd.engine.precheck import HostCheck, host_sides, split_stale, stale_outcome
from syncd.engine.report import RelationReport
from syncd.engine.sendstep import SendBatch, SettleBatch
from syncd.state import Failed
from syncd.support.log import log_pairs
from syncd.support.slots import Slot

log = structlog.get_logger("syncd")


def refusal(rel: RelationSettings, answer: Answer) -> RelationRefused:
    """The relation-level refusal an answer says (its verdict is RELATION)."""
    return RelationRefused(
        f"the CMDB refused {rel.bk_obj_asst_id}: {answer.error}",
        answer.hint,
        permission=answer.permission,
        request_id=answer.request_id,
    )


CANCELLED = "request abandoned: the shutdown deadline passed or the relation failed"


class PairObserver(Protocol):
    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None: ...
    def record_isolation(self, relation: str, requests: int) -> None: ...


class Applier:
    """Sends a relation's batches and deletes, at most the client's concurrency at once."""

    def __init__(
        self,
        client: CmdbClient,
        known: Known,
        sync: SyncSettings,
        *,
        observer: PairObserver | None = None,
        send: SendBatch | None = None,
    ) -> None:
        self.client = client
        self.known = known
        self.sync = sync
        self.observer = observer
        self.closed = asyncio.Event()
        """Set on stop: no new request starts; those in flight finish."""
        self.send: SendBatch = (
            send if send is not None else SettleBatch(sync.isolation_budget, self.closed)
        )
        self.hosts = HostCheck(client, sync.key_cache_ttl) if sync.host_precheck != "off" else None
        self._sent_before: set[str] = set()
        """Relations that sent host pairs in an earlier cycle of this process."""
        self._met_missing_host: set[str] = set()
        """Relations whose last cycle that sent anything met a missing host."""
        # The client's concurrency, counted at launch so that a stop leaves queued
        # batches unsent instead of queued inside the client.
        self._window = asyncio.Semaphore(client.settings.concurrency)
        self._batch_ids = itertools.count(1)
        self.on_progress: Callable[[int, int], None] | None = None
        self.progress = [0, 0]

    def begin_cycle(self, *, resync: bool = False) -> None:
        """A new cycle: progress from zero, a full isolation budget; SIGHUP also forgets
        which hosts were confirmed."""
        self.progress = [0, 0]
        if isinstance(self.send, SettleBatch):
            self.send.begin_cycle()
        if resync and self.hosts is not None:
            self.hosts.forget()

    async def create(
        self,
        rel: RelationSettings,
        batches: list[list[PairKey]],
        report: RelationReport,
        *,
        replaces: Replaces | None = None,
    ) -> None:
        """Send every batch; raises RelationRefused once the CMDB refused the relation.

        ``replaces``: the creates that complete a move -> the old pairs their move deleted
        (their lines say ``operation: "move"`` and name them; they count as ``moved``).
        """
        refused: list[RelationRefused] = []
        if batches and any(host_sides(rel.bk_obj_id, rel.bk_asst_obj_id)):
            precheck = self._wants_precheck(rel.name)
            self._sent_before.add(rel.name)
            self._met_missing_host.discard(rel.name)  # this cycle's answers decide again
            if precheck:
                batches = await self._precheck(rel, batches, report, refused, replaces)
        self.progress[1] += sum(len(b) for b in batches)
        if batches:
            report.mark("sending", first=True)
        async with asyncio.TaskGroup() as tg:
            for batch in batches:
                await self._window.acquire()
                if self.closed.is_set() or refused:
                    self._window.release()
                    break
                tg.create_task(self._create_one(rel, batch, report, refused, replaces))
        if batches:
            report.mark("sent")
        if refused:
            raise refused[0]

    async def read_then_ask_hosts(self, rel: RelationSettings, read: Coroutine[Any, Any, D]) -> D:
        """``read`` (a first sync's source read), then the host pre-check of every pair it
        gave, started at once: it then overlaps the resync and the plan, not follows them."""
        desired = await read
        sides = host_sides(rel.bk_obj_id, rel.bk_asst_obj_id)
        if self.hosts is not None and any(sides) and self._wants_precheck(rel.name):
            ids: set[int] = set()
            for side in (0, 1):
                if sides[side]:
                    ids.update(ids_of(desired.pairs, side))
            self.hosts.ask_ahead(ids)
            # One turn of the loop puts the request on the wire (a pooled connection, the
            # rate limit not yet reached) before the plan, CPU only for ~60 ms a 100k
            # pairs, holds the loop: the answer then comes back during the plan.
            await asyncio.sleep(0)
        return desired

    def _wants_precheck(self, name: str) -> bool:
        """``on``: always. ``auto``: on a relation's first sending cycle (a first sync sends
        many hosts at once) and while its last sending cycle met a missing host; a clean
        relation then reacts to the rare refusal instead of paying a read each cycle."""
        if self.hosts is None:
            return False
        if self.sync.host_precheck == "on":
            return True
        return name not in self._sent_before or name in self._met_missing_host

    async def _precheck(
        self,
        rel: RelationSettings,
        batches: list[list[PairKey]],
        report: RelationReport,
        refused: list[RelationRefused],
        replaces: Replaces | None,
    ) -> list[list[PairKey]]:
        """Hold back pairs naming hosts the CMDB does not have, without sending them."""
        assert self.hosts is not None
        sides = host_sides(rel.bk_obj_id, rel.bk_asst_obj_id)
        ids: set[int] = set()
        for side in (0, 1):
            if sides[side]:
                ids.update(*(ids_of(batch, side) for batch in batches))
        try:
            missing = await self.hosts.missing(ids)
        except CmdbError as exc:
            # Not fatal: the sends will meet the refusals and react to them.
            log.warning("host_precheck_failed", error=str(exc))
            return batches
        if not missing:
            return batches
        kept: list[list[PairKey]] = []
        stale: list[tuple[int, int, IndexKind]] = []
        for batch in batches:
            keep, gone = split_stale(unpack_list(batch), missing, sides)
            stale.extend(gone)
            if not gone:
                kept.append(batch)
            elif keep:
                kept.append([pack(s, d) for s, d in keep])
        if stale:
            outcome = stale_outcome(stale)
            self.record(rel, next(self._batch_ids), outcome, report, refused, replaces)
        return kept

    async def _create_one(
        self,
        rel: RelationSettings,
        keys: list[PairKey],
        report: RelationReport,
        refused: list[RelationRefused],
        replaces: Replaces | None,
    ) -> None:
        batch_id = next(self._batch_ids)
        details = unpack_list(keys)
        slot = Slot(self._window)  # lent out while the client backs off
        attempt: int | None = None
        try:
            try:
                attempt = self.known.intend(rel.name, details, keys)  # durable before it leaves
                try:
                    with slot.bound():
                        outcome = await self.send(self.client, rel, details)
                except asyncio.CancelledError:
                    lost = whole_failure(details, CANCELLED)
                    log_pairs(lost.lines, batch=batch_id, request_id=None)
                    report.failed += len(details)
                    raise
            finally:
                slot.release()
            report.sent += len(details)
            self.record(rel, batch_id, outcome, report, refused, replaces, attempt, keys)
        finally:
            # However it ended, the request is over: an attempt row left behind (cancelled,
            # or its answer not recorded) is an ambiguous end from now on.
            if attempt is not None:
                self.known.store.attempts.release(attempt)
        self.progress[0] += len(details)
        if self.on_progress is not None:
            self.on_progress(self.progress[0], self.progress[1])

    def record(
        self,
        rel: RelationSettings,
        batch_id: int,
        outcome: BatchOutcome,
        report: RelationReport,
        refused: list[RelationRefused],
        replaces: Replaces | None = None,
        attempt: int | None = None,
        keys: list[PairKey] | None = None,
    ) -> None:
        """Store the outcome (one transaction), count it, log its lines; ``keys``: the
        batch's details packed, when the caller has them."""
        answer = outcome.answer
        if answer is not None and outcome.refusal is not None and not refused:
            refused.append(refusal(rel, answer))
        self.known.record(rel.name, outcome, self._schedule(rel.name, outcome), attempt, keys)
        report.created += len(outcome.created)
        report.exists += len(outcome.exists)
        report.failed += len(outcome.failed)
        report.conflicts.extend(
            pack(f.src, f.dst) for f in outcome.failed if f.kind is not None and f.kind.is_conflict
        )
        if self.observer is not None:
            for name, rows in (("created", outcome.created), ("exists", outcome.exists)):
                self.observer.record_pair(rel.name, name, len(rows))
            self.observer.record_pair(rel.name, "failed", len(outcome.failed))
        sides = host_sides(rel.bk_obj_id, rel.bk_asst_obj_id)
        if any(
            (f.kind is IndexKind.MISSING_SOURCE and sides[0])
            or (f.kind is IndexKind.MISSING_TARGET and sides[1])
            for f in outcome.failed
        ):
            self._met_missing_host.add(rel.name)
        report.isolation_requests += outcome.isolation_requests
        report.deferred += len(outcome.deferred)
        if self.observer is not None:
            self.observer.record_isolation(rel.name, outcome.isolation_requests)
        if replaces:
            moved, failed = count_moves(outcome, replaces)
            report.moved += moved
            report.move_failed += failed
            if self.observer is not None and moved:
                self.observer.record_pair(rel.name, "moved", moved)
        groups = outcome.request_groups()
        batches = [batch_id] + [next(self._batch_ids) for _ in groups[1:]]
        for number, group in zip(batches, groups, strict=True):
            lines = mark_moves(group.lines, replaces) if replaces else group.lines
            log_pairs(lines, batch=number, request_id=group.request_id)
        if outcome.isolation_requests or outcome.deferred:
            log.info(
                "batch_isolated",
                batch=batch_id,
                batches=batches,
                isolation_requests=outcome.isolation_requests,
                failed=len(outcome.failed),
                deferred=len(outcome.deferred),
                error=answer.error if answer is not None else None,
            )

    def _schedule(self, name: str, outcome: BatchOutcome) -> list[Failed]:
        """When each failed pair may be sent again (per-pair backoff)."""
        now = self.known.clock()
        per_index = [f for f in outcome.failed if f.kind is not None]
        attempts = (
            self.known.store.failure_attempts(name, [pack(f.src, f.dst) for f in per_index])
            if per_index
            else {}
        )
        rows: list[Failed] = []
        for f in outcome.failed:
            when: float | None = now
            if f.kind is not None:
                n = attempts.get(pack(f.src, f.dst), 0) + 1
                when = pair_next_attempt(
                    f.kind,
                    n,
                    now,
                    self.sync.pair_backoff_base,
                    self.sync.pair_backoff_cap,
                    isolated=f.isolated,
                )
            rows.append(Failed(f.src, f.dst, f.reason, f.message, when))
        return rows

    # -- deletes ----------------------------------------------------------------

    async def delete(
        self,
        rel: RelationSettings,
        keys: list[PairKey],
        report: RelationReport,
        *,
        replaced_by: Mapping[PairKey, PairKey] | None = None,
    ) -> set[PairKey]:
        """Delete known pairs, 500 ids a request, same limits as creates; returns those gone.

        Pruned pairs by default; with ``replaced_by`` (old pair -> the pair that replaces
        it) the first step of moves, whose lines say ``operation: "move"``.
        """
        ids = self.known.store.association_ids(rel.name, keys)
        targets = [(k, i) for k in keys if (i := ids.get(k)) is not None]
        if len(targets) < len(keys):
            log.warning(
                "move_skipped_without_id"
                if replaced_by is not None
                else "prune_skipped_without_id",
                pairs=len(keys) - len(targets),
                hint="their association ids are unknown; they are retried after a lookup",
            )
        gone: set[PairKey] = set()
        async with asyncio.TaskGroup() as tg:
            for i in range(0, len(targets), PAGE_LIMIT):
                await self._window.acquire()
                if self.closed.is_set():
                    self._window.release()
                    break
                chunk = targets[i : i + PAGE_LIMIT]
                tg.create_task(self._delete_one(rel, chunk, report, gone, replaced_by))
        return gone

    async def _delete_one(
        self,
        rel: RelationSettings,
        chunk: list[tuple[PairKey, int]],
        report: RelationReport,
        gone: set[PairKey],
        replaced_by: Mapping[PairKey, PairKey] | None,
    ) -> None:
        batch_id = next(self._batch_ids)
        slot = Slot(self._window)
        try:
            with slot.bound():
                answer = await self.client.delete_associations(rel.bk_obj_id, [i for _, i in chunk])
        finally:
            slot.release()
        ok = answer.verdict is Verdict.OK
        if ok:
            # Unknown ids are skipped by the CMDB: a pair already gone counts as deleted.
            self.known.remove(rel.name, [k for k, _ in chunk])
            gone.update(k for k, _ in chunk)
            if replaced_by is None:
                report.deleted += len(chunk)
                if self.observer is not None:
                    self.observer.record_pair(rel.name, "deleted", len(chunk))
        elif replaced_by is None:
            report.delete_failed += len(chunk)
        else:
            report.move_failed += len(chunk)
        lines = [
            (
                "info" if ok else "warning",
                delete_fields(ok, index, key, assoc_id, answer.error, replaced_by),
            )
            for index, (key, assoc_id) in enumerate(chunk)
        ]
        log_pairs(lines, batch=batch_id, request_id=answer.request_id)
