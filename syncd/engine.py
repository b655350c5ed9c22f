"""The reconcile loop body: for each relation, pull, diff, batch, send, record.

Level-triggered like a Kubernetes controller: each cycle compares the whole
desired state with the whole known state and converges, so nothing depends on
having seen an event. Known state is written as each answer arrives, so a crash
loses at most the answers in flight, and those pairs come back as "already
exists" on the next try, never as doubles.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import structlog

from syncd.backoff import pair_next_attempt
from syncd.batching import Mapping, plan_batches
from syncd.cmdb.client import PAGE_LIMIT, CmdbClient, CmdbError
from syncd.config import RelationSettings, Settings
from syncd.diff import diff
from syncd.log import emit, wants
from syncd.outcome import Answer, BadAnswer, IndexKind, Verdict, split_batch_data
from syncd.pairs import MAX_ID, PairKey, pack, pack_raw, unpack
from syncd.prune import PruneDecision, decide_prune, source_guard
from syncd.resolver import KeyResolver, KeySpec
from syncd.sources import registry
from syncd.sources.base import RawValue, Source, SourceError
from syncd.state import StateStore

log = structlog.get_logger("syncd")


class EngineObserver(Protocol):
    """Where the engine reports counts (the metrics registry implements this)."""

    def record_pair(self, relation: str, outcome: str, n: int = 1) -> None: ...
    def set_relation_gauges(self, relation: str, desired: int, known: int, failed: int) -> None: ...
    def mark_success(self, relation: str) -> None: ...
    def record_cycle(self, seconds: float) -> None: ...


@dataclass
class RelationReport:
    """What one relation's cycle did; logged as ``event=relation``."""

    relation: str
    desired: int = 0
    known: int = 0
    sent: int = 0
    created: int = 0
    exists: int = 0
    failed: int = 0
    held: int = 0
    deferred: int = 0
    bad_records: int = 0
    unresolved: int = 0
    unresolved_keys: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    """(side, key, origin) of keys that resolved to no instance (or to two)."""
    absent: int = 0
    deleted: int = 0
    delete_failed: int = 0
    prune_blocked: str | None = None
    resynced: bool = False
    error: str | None = None
    duration: float = 0.0

    @property
    def converged(self) -> bool:
        """Every desired pair is in the CMDB."""
        return (
            self.error is None
            and self.known >= self.desired
            and self.failed == 0
            and self.held == 0
            and self.deferred == 0
            and self.unresolved == 0
        )


@dataclass
class CycleReport:
    relations: list[RelationReport] = field(default_factory=list)
    duration: float = 0.0

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.relations)

    @property
    def ok(self) -> bool:
        """No relation-level failure (the readiness signal)."""
        return all(r.error is None for r in self.relations)

    @property
    def converged(self) -> bool:
        return all(r.converged for r in self.relations)

    def summary(self) -> dict[str, Any]:
        return {
            "desired": self.total("desired"),
            "known": self.total("known"),
            "sent": self.total("sent"),
            "created": self.total("created"),
            "exists": self.total("exists"),
            "failed": self.total("failed"),
            "held": self.total("held"),
            "unresolved": self.total("unresolved"),
            "deleted": self.total("deleted"),
            "relations_failed": sum(1 for r in self.relations if r.error is not None),
            "duration": round(self.duration, 3),
        }


@dataclass
class RelationPlan:
    """What a cycle would do for one relation (``syncd plan`` prints it)."""

    relation: str
    desired: int
    known: int
    batches: list[list[PairKey]]
    deferred: list[PairKey]
    held: dict[PairKey, tuple[str, str]]
    absent: frozenset[PairKey]
    prune: PruneDecision
    bad_records: int = 0
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def to_create(self) -> list[PairKey]:
        return [k for batch in self.batches for k in batch]


class BadValue(ValueError):
    pass


def to_id(value: RawValue) -> int:
    """A CMDB instance id from a source value: a non-negative int64, or BadValue."""
    if isinstance(value, bool):
        raise BadValue(f"{value!r} is not an integer id")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        # ASCII digits only: int() also takes "1_000", "+5", " 7 " and full-width digits.
        if not (value.isascii() and value.isdigit()):
            raise BadValue(f"{value[:40]!r} is not an integer id")
        number = int(value) if len(value) <= 20 else MAX_ID + 1  # no 4300-digit int()
    else:
        raise BadValue(f"{value!r} is not an integer id")
    if not 0 <= number <= MAX_ID:
        raise BadValue(f"{number} is out of range for an instance id")
    return number


def _to_key(value: RawValue) -> str:
    """A natural key from a source value: a non-empty string."""
    if value is None or isinstance(value, bool):
        raise BadValue(f"{value!r} is not a key")
    key = str(value).strip()
    if not key:
        raise BadValue("empty key")
    return key


def _log_bad_record(rel: RelationSettings, source: Source, record: int, exc: BadValue) -> None:
    log.warning(
        "bad_record",
        relation=rel.name,
        source=source.label,
        origin=source.origin(record),
        reason=str(exc),
    )


async def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task whose result is no longer wanted, and reap it quietly."""
    task.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task


def make_source(rel: RelationSettings) -> Source:
    """The source a relation's config describes, with its include/exclude filters."""
    return registry.make_source(rel.source, name=rel.name, filters=rel.filters)


class RelationRefused(Exception):
    """The CMDB refused the relation as a whole (credentials, permission, model)."""


class Engine:
    """Runs cycles; owns the in-memory mirror of known state."""

    def __init__(
        self,
        settings: Settings,
        client: CmdbClient,
        store: StateStore,
        *,
        observer: EngineObserver | None = None,
        clock: Callable[[], float] = time.time,
        source_factory: Callable[[RelationSettings], Source] = make_source,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.observer = observer
        self.clock = clock
        self.source_factory = source_factory
        self.stopping = False
        self._slots = asyncio.Semaphore(settings.cmdb.concurrency)
        self._batch_ids = itertools.count(1)
        self._known: dict[str, set[PairKey]] = {}
        self._mapping: dict[str, Mapping] = {}
        self.resolver = KeyResolver(client, ttl=settings.sync.key_cache_ttl)
        self._source_cache: dict[str, tuple[str, set[PairKey], int]] = {}
        """relation -> (source fingerprint, desired, bad records) of the last read."""
        self.on_progress: Callable[[int, int], None] | None = None
        """Called with (sent, to_send) as batches complete (the terminal progress bar)."""
        self._progress = [0, 0]

    def stop(self) -> None:
        """Stop taking new batches; those in flight finish."""
        self.stopping = True
        self.client.stopping = True

    # -- a cycle ----------------------------------------------------------

    async def cycle(self, *, resync: bool = False) -> CycleReport:
        """One pass over every relation, concurrently, sharing the client's limits."""
        started = time.monotonic()
        self._progress = [0, 0]
        if resync:
            self.resolver.invalidate()
            self._source_cache.clear()
            for rel in self.settings.relations:
                # The operator's word: whatever size the source has now is accepted.
                self.store.set_meta(f"last_desired:{rel.name}", "0")
        reports = await asyncio.gather(
            *(self.sync_relation(rel, resync=resync) for rel in self.settings.relations)
        )
        report = CycleReport(list(reports), time.monotonic() - started)
        if self.observer is not None:
            self.observer.record_cycle(report.duration)
        log.info("cycle", **report.summary(), stopped=self.stopping)
        return report

    async def sync_relation(self, rel: RelationSettings, *, resync: bool = False) -> RelationReport:
        report = RelationReport(rel.name)
        started = time.monotonic()
        try:
            await self._sync(rel, report, resync)
        except (SourceError, CmdbError, RelationRefused) as exc:
            report.error = str(exc)
            log.error(
                "relation_failed",
                relation=rel.name,
                bk_obj_asst_id=rel.bk_obj_asst_id,
                error=str(exc),
            )
        report.duration = time.monotonic() - started
        report.known = len(self._known.get(rel.name, ()))
        fields = asdict(report)
        fields["duration"] = round(report.duration, 3)
        fields.pop("relation")
        fields.pop("unresolved_keys")
        log.info("relation", relation=rel.name, bk_obj_asst_id=rel.bk_obj_asst_id, **fields)
        if self.observer is not None:
            self.observer.set_relation_gauges(
                rel.name, report.desired, report.known, report.failed + report.held
            )
            if report.error is None:
                self.observer.mark_success(rel.name)
        return report

    async def _sync(self, rel: RelationSettings, report: RelationReport, resync: bool) -> None:
        plan = await self.plan_relation(rel, resync=resync, write=True, report=report)
        if self.stopping:
            return
        self._progress[1] += sum(len(b) for b in plan.batches)
        refused: list[str] = []
        await asyncio.gather(*(self._send(rel, batch, report, refused) for batch in plan.batches))
        if refused:
            raise RelationRefused(refused[0])
        if self.stopping:
            return
        await self._fill_association_ids(rel)
        if plan.prune.delete and not self.stopping:
            await self._prune(rel, plan.prune.delete, report)

    async def plan_relation(
        self,
        rel: RelationSettings,
        *,
        resync: bool,
        write: bool,
        report: RelationReport | None = None,
    ) -> RelationPlan:
        """Everything a cycle decides before it writes: what to create, hold, delete.

        With ``write=False`` (``syncd plan``) the CMDB is read the way a full
        resync reads it, but neither the state nor the CMDB is changed.
        """
        report = report if report is not None else RelationReport(rel.name)
        name = rel.name
        # Reading the CMDB and reading the source don't depend on each other: overlap them.
        observing = asyncio.create_task(self._observe(rel, report, resync=resync, write=write))
        try:
            desired = await self._desired(rel, report, write=write)
        except BaseException as exc:
            await _discard(observing)
            if isinstance(exc, SourceError | CmdbError) and write and rel.prune.enabled:
                log.warning("prune_blocked", relation=name, reason="the source failed this cycle")
            raise
        known = await observing
        now = self.clock()
        held = self.store.held_back(name, now)
        result = diff(desired, known, held.keys())
        report.desired = len(desired)
        report.held = len(result.held)
        report.absent = len(result.absent)
        batches = plan_batches(result.to_create, self.settings.cmdb.batch_size, self._mapping[name])
        report.deferred = len(batches.deferred)
        decision = self._decide_prune(rel, desired, known, result.absent, now, write=write)
        report.prune_blocked = decision.blocked
        return RelationPlan(
            relation=name,
            desired=len(desired),
            known=len(known),
            batches=batches.batches,
            deferred=batches.deferred,
            held={k: held[k] for k in result.held},
            absent=result.absent,
            prune=decision,
            bad_records=report.bad_records,
            unresolved=list(report.unresolved_keys),
        )

    async def _observe(
        self, rel: RelationSettings, report: RelationReport, *, resync: bool, write: bool
    ) -> set[PairKey]:
        """The pairs known to be in the CMDB: from memory, the state file, or the CMDB itself."""
        name = rel.name
        mapping: asyncio.Task[None] | None = None
        if resync or name not in self._mapping:
            mapping = asyncio.create_task(self._load_mapping(rel))
        try:
            known = await self._observe_known(rel, report, resync=resync, write=write)
        except BaseException:
            if mapping is not None:
                await _discard(mapping)
            raise
        if mapping is not None:
            await mapping
        return known

    async def _observe_known(
        self, rel: RelationSettings, report: RelationReport, *, resync: bool, write: bool
    ) -> set[PairKey]:
        name = rel.name
        if not write:
            return await self._read_cmdb(rel)
        if resync or not self.store.has_resynced(name):
            await self.resync(rel)
            report.resynced = True
        elif name not in self._known:
            # A million rows take a while: off the event loop, beside the source read.
            self._known[name] = await asyncio.to_thread(self.store.known_keys, name)
        return self._known[name]

    def _decide_prune(
        self,
        rel: RelationSettings,
        desired: set[PairKey],
        known: set[PairKey],
        absent: frozenset[PairKey],
        now: float,
        *,
        write: bool,
    ) -> PruneDecision:
        if not rel.prune.enabled:
            return PruneDecision()
        name = rel.name
        guards = rel.prune.guards()
        owned_absent = self.store.owned_keys(name) & absent
        if write:
            self.store.mark_present(name, desired)
            self.store.mark_absent(name, owned_absent, now)
            info = self.store.absent_info(name, owned_absent)
        else:
            previous = self.store.absent_info(name, owned_absent)
            info = {
                k: (previous[k][0], previous[k][1] + 1) if k in previous else (now, 1)
                for k in owned_absent
            }
        blocked = source_guard(len(desired), self.store.last_good_desired(name), guards)
        if blocked is None and write:
            self.store.set_last_good_desired(name, len(desired))
        decision = decide_prune(
            {k: info[k] for k in owned_absent if k in info},
            known=len(known),
            now=now,
            guards=guards,
            blocked=blocked,
        )
        if decision.blocked and write:
            log.warning("prune_blocked", relation=name, reason=decision.blocked)
        return decision

    async def _read_cmdb(self, rel: RelationSettings) -> set[PairKey]:
        known: set[PairKey] = set()
        async for page in self.client.iter_associations(rel.bk_obj_id, rel.bk_obj_asst_id):
            known.update(pack(s, d) for s, d, _ in page)
        return known

    async def _load_mapping(self, rel: RelationSettings) -> None:
        row = await self.client.find_object_association(rel.bk_obj_asst_id)
        if row is None:
            raise RelationRefused(
                f"model association {rel.bk_obj_asst_id!r} does not exist in the CMDB: "
                "create it there or fix the relation's bk_obj_asst_id"
            )
        self._mapping[rel.name] = Mapping.parse(row.get("mapping"))

    async def resync(self, rel: RelationSettings) -> None:
        """Rebuild known state for one relation from the CMDB itself.

        Pages are staged as they arrive and swapped in at the end in one
        transaction: a crash or a failed read mid-resync leaves the old state.
        Held-back pairs are released for the next try; their attempt counts stay.
        """
        name = rel.name
        known: set[PairKey] = set()
        self.store.begin_resync(name)
        try:
            async for page in self.client.iter_associations(rel.bk_obj_id, rel.bk_obj_asst_id):
                self.store.stage_resync(name, page)
                known.update(pack(s, d) for s, d, _ in page)
            added, removed = self.store.finish_resync(name, self.clock())
        except BaseException:
            self.store.abort_resync(name)
            raise
        # A resync is the operator's word: accept the source's current size as the baseline.
        self.store.set_last_good_desired(name, 0)
        self._known[name] = known
        log.info(
            "resync",
            relation=rel.name,
            bk_obj_asst_id=rel.bk_obj_asst_id,
            in_cmdb=len(known),
            added=added,
            removed=removed,
        )

    async def _desired(
        self, rel: RelationSettings, report: RelationReport, *, write: bool
    ) -> set[PairKey]:
        """The desired pairs; an unchanged file source is not read again."""
        source = self.source_factory(rel)
        fingerprint_of = getattr(source, "fingerprint", None)
        fingerprint = fingerprint_of() if callable(fingerprint_of) else None
        natural = rel.source_key != "id" or rel.target_key != "id"
        cached = self._source_cache.get(rel.name)
        if not natural and fingerprint is not None and cached and cached[0] == fingerprint:
            report.bad_records = cached[2]
            log.debug("source_unchanged", relation=rel.name, fingerprint=fingerprint)
            return cached[1]
        if natural:
            desired = await self._read_with_keys(rel, source, report)
        else:
            desired = await self.read_desired(rel, report, source)
        self._check_not_suddenly_empty(rel, source, desired, write=write)
        if fingerprint is not None and not natural:
            self._source_cache[rel.name] = (fingerprint, desired, report.bad_records)
        return desired

    def _check_not_suddenly_empty(
        self, rel: RelationSettings, source: Source, desired: set[PairKey], *, write: bool
    ) -> None:
        """An empty answer where the last one was large is a broken source, not a fact.

        An inventory that answers nothing (a truncated export, an API that lost
        its data) must not look like "no cabling at all". A resync (SIGHUP)
        accepts an intentionally emptied source.
        """
        key = f"last_desired:{rel.name}"
        last = int(self.store.get_meta(key) or 0)
        threshold = self.settings.sync.empty_source_guard
        if not desired and threshold and last >= threshold:
            raise SourceError(
                f"{source.label} returned no pairs, but {last} last time; treating the read "
                "as failed (send SIGHUP to accept an empty source)"
            )
        if write and len(desired) != last:
            self.store.set_meta(key, str(len(desired)))

    async def _read_with_keys(
        self, rel: RelationSettings, source: Source, report: RelationReport
    ) -> set[PairKey]:
        """Facts named by natural keys (names, IPs): resolve them in bulk through the CMDB."""
        specs = (
            KeySpec(rel.bk_obj_id, rel.source_key),
            KeySpec(rel.bk_asst_obj_id, rel.target_key),
        )
        facts: list[tuple[str | int, str | int, int]] = []
        bad = 0
        async for chunk in source.facts():
            for src_raw, dst_raw, record in chunk:
                try:
                    pair = tuple(
                        to_id(raw) if spec.is_id else _to_key(raw)
                        for spec, raw in zip(specs, (src_raw, dst_raw), strict=True)
                    )
                except BadValue as exc:
                    bad += 1
                    _log_bad_record(rel, source, record, exc)
                    continue
                facts.append((pair[0], pair[1], record))
        report.bad_records = bad + source.stats.bad
        maps: list[dict[str, int]] = [{}, {}]
        for side, spec in enumerate(specs):
            if spec.is_id:
                continue
            values = {str(f[side]) for f in facts}
            res = await self.resolver.resolve(spec, values)
            maps[side] = res.ids
            for key, candidates in sorted(res.ambiguous.items()):
                log.error(
                    "ambiguous_key",
                    relation=rel.name,
                    bk_obj_id=spec.bk_obj_id,
                    attribute=spec.attribute,
                    key=key,
                    ids=candidates,
                    hint="two instances carry this key; syncd will not guess: fix the CMDB data",
                )
        desired: set[PairKey] = set()
        reported: set[tuple[int, str]] = set()
        for fact in facts:
            ids: list[int] = []
            for side, spec in enumerate(specs):
                value = fact[side]
                if spec.is_id:
                    assert isinstance(value, int)
                    ids.append(value)
                    continue
                key = str(value)
                found = maps[side].get(key)
                if found is None:
                    if (side, key) not in reported:
                        reported.add((side, key))
                        report.unresolved_keys.append(
                            ("source" if side == 0 else "target", key, source.origin(fact[2]))
                        )
                        log.warning(
                            "pair",
                            outcome="unresolved",
                            relation=rel.name,
                            bk_obj_asst_id=rel.bk_obj_asst_id,
                            side="source" if side == 0 else "target",
                            bk_obj_id=spec.bk_obj_id,
                            attribute=spec.attribute,
                            key=key,
                            origin=source.origin(fact[2]),
                        )
                    break
                ids.append(found)
            else:
                desired.add(pack(ids[0], ids[1]))
        report.unresolved = len(reported)
        return desired

    async def read_desired(
        self, rel: RelationSettings, report: RelationReport, source: Source | None = None
    ) -> set[PairKey]:
        """Pull an id-keyed source into a set of pair keys; bad records are logged and skipped."""
        source = source if source is not None else self.source_factory(rel)
        desired: set[PairKey] = set()
        add = desired.add
        bad = 0
        async for chunk in source.facts():
            # Clean chunks (the usual case) convert at C speed; one bad value sends the
            # chunk through to_id, record by record, which names it.
            keys = pack_raw([f[0] for f in chunk], [f[1] for f in chunk])
            if keys is not None:
                desired.update(keys)
                continue
            for src_raw, dst_raw, record in chunk:
                try:
                    add((to_id(src_raw) << 64) | to_id(dst_raw))
                except BadValue as exc:
                    bad += 1
                    _log_bad_record(rel, source, record, exc)
        report.bad_records = bad + source.stats.bad
        return desired

    # -- one request --------------------------------------------------------

    async def _send(
        self,
        rel: RelationSettings,
        batch: list[PairKey],
        report: RelationReport,
        refused: list[str],
    ) -> None:
        async with self._slots:
            if self.stopping or refused:
                return
            batch_id = next(self._batch_ids)
            details = [unpack(k) for k in batch]
            try:
                answer = await self.client.batch_create(
                    rel.bk_obj_id, rel.bk_asst_obj_id, rel.bk_obj_asst_id, details
                )
            except asyncio.CancelledError:
                self._log_whole(rel, batch_id, details, "shutdown deadline passed", None)
                report.failed += len(details)
                raise
            report.sent += len(details)
            self._record(rel, batch_id, details, answer, report, refused)
            self._progress[0] += len(details)
            if self.on_progress is not None:
                self.on_progress(self._progress[0], self._progress[1])

    def _record(
        self,
        rel: RelationSettings,
        batch_id: int,
        details: list[tuple[int, int]],
        answer: Answer,
        report: RelationReport,
        refused: list[str],
    ) -> None:
        name = rel.name
        now = self.clock()
        if answer.verdict is Verdict.OK:
            try:
                results = split_batch_data(answer.data, len(details))
            except BadAnswer as exc:
                answer = replace(answer, verdict=Verdict.FAILED, message=f"syncd: {exc}", data=None)
        if answer.verdict is not Verdict.OK:
            if answer.verdict is Verdict.RELATION and not refused:
                refused.append(
                    f"the CMDB refused {rel.bk_obj_asst_id}: {answer.error}; {answer.hint}"
                )
                log.error(
                    "relation_refused",
                    relation=name,
                    bk_obj_asst_id=rel.bk_obj_asst_id,
                    error=answer.error,
                    fix=answer.hint,
                    permission=answer.permission,
                    request_id=answer.request_id,
                )
            whole: list[tuple[int, int, str, str, float | None]] = [
                (s, d, "request", answer.error, now) for s, d in details
            ]
            self.store.record_answer(name, failed=whole, now=now)
            self._log_whole(rel, batch_id, details, answer.error, answer.request_id)
            report.failed += len(details)
            if self.observer is not None:
                self.observer.record_pair(name, "failed", len(details))
            return

        created: list[tuple[int, int, int]] = []
        exists: list[tuple[int, int, int | None]] = []
        failures: list[tuple[int, tuple[int, int], IndexKind, str]] = []
        for res in results:
            src, dst = details[res.index]
            if res.kind is IndexKind.CREATED:
                assert res.association_id is not None
                created.append((src, dst, res.association_id))
            elif res.kind is IndexKind.EXISTS:
                exists.append((src, dst, None))
            else:
                failures.append((res.index, (src, dst), res.kind, res.message))
        failed_rows: list[tuple[int, int, str, str, float | None]] = []
        if failures:
            attempts = self.store.failure_attempts(
                name, [pack(s, d) for _, (s, d), _, _ in failures]
            )
            sync = self.settings.sync
            for _, (src, dst), kind, message in failures:
                n = attempts.get(pack(src, dst), 0) + 1
                when = pair_next_attempt(
                    kind, n, now, sync.pair_backoff_base, sync.pair_backoff_cap
                )
                failed_rows.append((src, dst, kind.value, message, when))
        self.store.record_answer(name, created=created, exists=exists, failed=failed_rows, now=now)
        known = self._known[name]
        known.update([(src << 64) | dst for src, dst, _ in created])
        known.update([(src << 64) | dst for src, dst, _ in exists])
        report.created += len(created)
        report.exists += len(exists)
        report.failed += len(failures)
        if self.observer is not None:
            self.observer.record_pair(name, "created", len(created))
            self.observer.record_pair(name, "exists", len(exists))
            self.observer.record_pair(name, "failed", len(failures))

        base = {
            "relation": name,
            "bk_obj_asst_id": rel.bk_obj_asst_id,
            "batch": batch_id,
            "request_id": answer.request_id,
        }
        # One line per index, in index order, rendered and written together (syncd.log.emit).
        with_known = wants("info")
        lines: list[tuple[str, dict[str, Any]]] = []
        for res in results:
            kind = res.kind
            if kind is IndexKind.CREATED or kind is IndexKind.EXISTS:
                if not with_known:
                    continue
                src, dst = details[res.index]
                if kind is IndexKind.CREATED:
                    fields: dict[str, Any] = {
                        "outcome": "created",
                        "index": res.index,
                        "bk_inst_id": src,
                        "bk_asst_inst_id": dst,
                        "association_id": res.association_id,
                    }
                else:
                    fields = {
                        "outcome": "exists",
                        "index": res.index,
                        "bk_inst_id": src,
                        "bk_asst_inst_id": dst,
                    }
                lines.append(("info", fields))
            else:
                src, dst = details[res.index]
                fields = {
                    "outcome": "failed",
                    "index": res.index,
                    "bk_inst_id": src,
                    "bk_asst_inst_id": dst,
                    "error": res.message,
                    "reason": kind.value,
                }
                lines.append(("warning", fields))
        if lines:
            emit("pair", lines, base)

    def _log_whole(
        self,
        rel: RelationSettings,
        batch_id: int,
        details: list[tuple[int, int]],
        error: str,
        request_id: str | None,
    ) -> None:
        """A request that failed as a whole: still one line per detail."""
        name, asst = rel.name, rel.bk_obj_asst_id
        emit(
            "pair",
            [
                (
                    "warning",
                    {
                        "outcome": "failed",
                        "relation": name,
                        "bk_obj_asst_id": asst,
                        "batch": batch_id,
                        "index": index,
                        "bk_inst_id": src,
                        "bk_asst_inst_id": dst,
                        "error": error,
                        "reason": "request",
                        "request_id": request_id,
                    },
                )
                for index, (src, dst) in enumerate(details)
            ],
            {},
        )

    async def _prune(
        self, rel: RelationSettings, keys: list[PairKey], report: RelationReport
    ) -> None:
        """Delete owned pairs that left the source, 500 ids a request, same limits as creates."""
        ids = self.store.association_ids(rel.name, keys)
        targets = [(k, i) for k in keys if (i := ids.get(k)) is not None]
        if len(targets) < len(keys):
            log.warning(
                "prune_skipped_without_id",
                relation=rel.name,
                pairs=len(keys) - len(targets),
                hint="their association ids are unknown; they are retried after a lookup",
            )
        chunks = [targets[i : i + PAGE_LIMIT] for i in range(0, len(targets), PAGE_LIMIT)]
        await asyncio.gather(*(self._delete(rel, chunk, report) for chunk in chunks))

    async def _delete(
        self, rel: RelationSettings, chunk: list[tuple[PairKey, int]], report: RelationReport
    ) -> None:
        async with self._slots:
            if self.stopping:
                return
            batch_id = next(self._batch_ids)
            answer = await self.client.delete_associations(rel.bk_obj_id, [i for _, i in chunk])
        keys = [k for k, _ in chunk]
        ok = answer.verdict is Verdict.OK
        if ok:
            # Unknown ids are skipped by the CMDB: a pair already gone counts as deleted.
            self.store.remove(rel.name, keys)
            self._known[rel.name].difference_update(keys)
            report.deleted += len(chunk)
            if self.observer is not None:
                self.observer.record_pair(rel.name, "deleted", len(chunk))
        else:
            report.delete_failed += len(chunk)
        emit = log.info if ok else log.warning
        extra = {} if ok else {"operation": "delete", "error": answer.error}
        for index, (key, assoc_id) in enumerate(chunk):
            src, dst = unpack(key)
            emit(
                "pair",
                outcome="deleted" if ok else "failed",
                index=index,
                bk_inst_id=src,
                bk_asst_inst_id=dst,
                association_id=assoc_id,
                relation=rel.name,
                bk_obj_asst_id=rel.bk_obj_asst_id,
                batch=batch_id,
                request_id=answer.request_id,
                **extra,
            )

    async def _fill_association_ids(self, rel: RelationSettings) -> None:
        """Pairs that came back "already exists" get their ids, looked up in bulk."""
        missing = self.store.missing_association_ids(rel.name)
        if not missing:
            return
        try:
            found = await self.client.lookup_association_ids(
                rel.bk_obj_id, rel.bk_obj_asst_id, missing
            )
        except CmdbError as exc:
            log.warning("association_id_lookup_failed", relation=rel.name, error=str(exc))
            return
        self.store.set_association_ids(rel.name, [(s, d, i) for (s, d), i in found.items()])
        gone = len(missing) - len(found)
        if gone:
            log.warning(
                "association_ids_missing",
                relation=rel.name,
                missing=gone,
                hint="pairs known to syncd were not found in the CMDB; SIGHUP resyncs",
            )
