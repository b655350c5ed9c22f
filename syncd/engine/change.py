"""Apply one pushed change at once: read only what it names, create, delete or move its pairs.

A NetBox webhook names a cable (or a device). Re-reading all of NetBox for it costs
seconds at a few thousand cables and minutes at a large site; instead this reads the
cables named (and every cable of a device named) with the source's filters, compares
what they give now with what they gave at the last read (:class:`syncd.core.change.RecordIndex`,
built from every full read) and sends just the difference, through the same applier
(rate budget, batches, ``pair`` lines, state) as a cycle.

It only acts when it can be sure: a relation with one NetBox source in ``cables`` mode,
read in full at least once by this process, and no create blocked by a known pair under
a ``1:n`` / ``1:1`` mapping (a move: :mod:`syncd.core.moves` decides it in the cycle).
Anything else raises :class:`ChangeUncertain` and the caller asks for a full read instead.
A pair the change removes is deleted at once only when pruning is on, syncd owns it, no
unresolved key could still mean it (``Reconciler.may_delete``,
:func:`syncd.core.uncertain.certainly_absent`), and the count stays within the prune caps;
with ``hooks.netbox.prune_at_once = false`` its absence is only recorded, and the full
cycle's grace decides (an incremental delete is the source stating an absence for that
cable).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.batching import plan_batches
from syncd.core.change import Delta, Entry, RecordIndex
from syncd.core.moves import find_blockers
from syncd.core.pairs import PairKey
from syncd.core.uncertain import CERTAIN, Uncertainty
from syncd.engine.apply import Applier
from syncd.engine.desired import (
    BadValue,
    Collected,
    Desired,
    Fact,
    SourceFactory,
    build_pairs,
    key_specs,
    make_source,
    resolve_side,
    to_id,
    to_key,
)
from syncd.engine.known import Known
from syncd.engine.report import RelationReport
from syncd.engine.resolver import KeyResolver
from syncd.sources.base import RawValue, Source
from syncd.sources.filters import FilteredSource

if TYPE_CHECKING:
    from syncd.sources.netbox import NetBoxSource, RecordFacts

log = structlog.get_logger("syncd")

RawPair = tuple[RawValue, RawValue]


class ChangeUncertain(Exception):
    """An incremental apply cannot be sure of its answer: read the relation in full."""


@dataclass(frozen=True, slots=True)
class Change:
    """What a push names: cables, and devices whose every cable is read again."""

    cables: frozenset[int] = frozenset()
    devices: frozenset[int] = frozenset()

    def __or__(self, other: Change) -> Change:
        return Change(self.cables | other.cables, self.devices | other.devices)

    @property
    def size(self) -> int:
        return len(self.cables) + len(self.devices)


def _netbox(source: Source) -> tuple[NetBoxSource | None, FilteredSource | None]:
    """The NetBox source inside ``source`` (unwrapping filters), and the filters."""
    filters = source if isinstance(source, FilteredSource) else None
    inner = filters.inner if filters is not None else source
    # Every full read asks; a source of another type must not cost NetBox's import.
    netbox = sys.modules.get("syncd.sources.netbox")
    if netbox is None:  # never imported: no source can be one
        return None, filters
    netbox_source: type[NetBoxSource] = netbox.NetBoxSource
    if isinstance(inner, netbox_source) and inner.settings.mode == "cables":
        return inner, filters
    return None, filters


def _entries(
    records: dict[int, RecordFacts], filters: FilteredSource | None
) -> dict[int, Entry[RawPair]]:
    keep = filters.keep if filters is not None else (lambda _s, _d: True)
    return {
        r: Entry(e.devices, tuple(f for f in e.facts if keep(f[0], f[1])))
        for r, e in records.items()
    }


class ChangeApplier:
    """The record index per relation, and the incremental apply that uses it."""

    def __init__(
        self,
        known: Known,
        applier: Applier,
        resolver: KeyResolver,
        *,
        batch_size: int,
        last_desired: dict[str, set[PairKey]],
        uncertainty: dict[str, Uncertainty],
        may_delete: Callable[[str, PairKey], bool],
        source_factory: SourceFactory = make_source,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.known = known
        self.applier = applier
        self.resolver = resolver
        self.batch_size = batch_size
        self.last_desired = last_desired
        self.uncertainty = uncertainty
        """Each relation's open keys (the reconciler's, from its last read): a change's
        unresolved facts are added, so later deletes respect them too."""
        self.may_delete = may_delete
        self.source_factory = source_factory
        self.clock = clock
        self.prune_at_once = True
        self.indexes: dict[str, RecordIndex[RawPair]] = {}

    # -- the index, from full reads ---------------------------------------------------------

    def full_read(self, rel: RelationSettings, sources: list[Source] | None) -> None:
        """A full read of ``rel`` succeeded with these sources (None: it failed or was
        cached): index what its NetBox source said, or forget the index."""
        if sources is None or len(sources) != 1:
            self.indexes.pop(rel.name, None)
            return
        netbox, filters = _netbox(sources[0])
        if netbox is None:
            self.indexes.pop(rel.name, None)
            return
        self.indexes[rel.name] = RecordIndex.build(_entries(netbox.by_record, filters))

    def can_apply(self, name: str) -> bool:
        return name in self.indexes

    # -- one change ---------------------------------------------------------------------------

    async def apply(self, rel: RelationSettings, change: Change, report: RelationReport) -> None:
        """Read what ``change`` names and carry out the difference; ChangeUncertain when it
        cannot be sure (the caller then reads in full). SourceError / CmdbError propagate."""
        index = self.indexes.get(rel.name)
        if index is None:
            raise ChangeUncertain(f"relation {rel.name!r} has no full NetBox read to compare with")
        netbox, filters = _netbox(self.source_factory(rel, 0))
        if netbox is None:
            raise ChangeUncertain(f"relation {rel.name!r} does not read NetBox cables")
        cables = set(change.cables) | index.records_of(change.devices)
        records = await netbox.read_cables(cables=cables, devices=change.devices)
        delta = index.preview(_entries(records, filters))
        report.source_counts = {"records": len(records)}
        if not delta.empty:
            await self._carry_out(rel, delta, netbox, report)
        index.commit(delta)

    async def _carry_out(
        self, rel: RelationSettings, delta: Delta[RawPair], source: Source, report: RelationReport
    ) -> None:
        name = rel.name
        origin = {f: r for r, e in delta.records.items() for f in e.facts}
        read = await self._keys(rel, delta.entered, origin, source, log_unresolved=True)
        entered = read.pairs
        left = (await self._keys(rel, delta.left, origin, source, log_unresolved=False)).pairs
        left -= entered
        now = self.clock()
        known = self.known.pairs(name)
        held = self.known.store.held_back(name, now)
        to_create = [k for k in sorted(entered) if k not in known and k not in held]
        if find_blockers(to_create, known, self.known.mapping(name)):
            # A move under 1:n / 1:1: the old pair must go first, and the cycle's move
            # logic (syncd.core.moves) decides whether it may.
            raise ChangeUncertain("a create is blocked by a known pair (a move): a full read")
        desired = self.last_desired.setdefault(name, set())
        desired.update(entered)
        desired.difference_update(left)
        if read.uncertainty:
            before = self.uncertainty.get(name, CERTAIN)
            self.uncertainty[name] = before.merged(read.uncertainty)
        report.desired = len(desired)
        report.held = len(entered & held.keys())
        report.pending = len(to_create)
        if rel.prune.enabled and entered:
            self.known.store.mark_present(name, entered)
        batches = plan_batches(to_create, self.batch_size, self.known.mapping(name))
        try:
            await self.applier.create(rel, batches.batches, report)
        finally:
            report.pending -= report.created + report.exists
        report.deferred = len(batches.deferred)
        if report.created or report.exists:
            await self.known.fill_association_ids(rel)
        if left and rel.prune.enabled:
            await self._prune(rel, left & known, report, now)

    async def _prune(
        self, rel: RelationSettings, gone: set[PairKey], report: RelationReport, now: float
    ) -> None:
        """Delete the owned pairs the source said are gone, within the prune caps, and never
        one an unresolved fact could still mean (``may_delete``)."""
        sure = {k for k in gone if self.may_delete(rel.name, k)}
        if len(sure) < len(gone):
            log.info("prune_kept", pairs=len(gone) - len(sure), reason="an unresolved key")
        owned = self.known.store.owned_among(rel.name, sure)
        if not owned:
            return
        guards = rel.prune.guards()
        cap = min(guards.max_count, int(self.known.count(rel.name) * guards.max_fraction))
        if not self.prune_at_once or len(owned) > cap:
            self.known.store.mark_absent(rel.name, owned, now)
            report.absent = len(owned)
            why = "prune_at_once is off" if self.prune_at_once is False else "over the prune cap"
            log.info("prune_waiting", pairs=len(owned), reason=why, hint="the full cycle decides")
            return
        await self.applier.delete(rel, sorted(owned), report)

    async def _keys(
        self,
        rel: RelationSettings,
        raw: Iterable[RawPair],
        origin: dict[RawPair, int],
        source: Source,
        *,
        log_unresolved: bool,
    ) -> Desired:
        """Raw pairs to pair keys: ids checked, natural keys resolved (the resolver's cache);
        what did not resolve is in the answer's ``uncertainty``."""
        specs = key_specs(rel)
        facts: list[Fact] = []
        for src, dst in raw:
            try:
                a, b = (
                    to_id(v) if spec.is_id else to_key(v)
                    for spec, v in zip(specs, (src, dst), strict=True)
                )
            except BadValue:
                continue  # logged as bad_record by the read that saw it
            facts.append((a, b, origin.get((src, dst), 0)))
        maps = [
            await resolve_side(spec, side, facts, self.resolver) for side, spec in enumerate(specs)
        ]
        collected = Collected(facts, 0, {})
        return build_pairs(specs, maps, source, collected, "netbox", quiet=not log_unresolved)
