"""Reading a relation's sources each cycle: all of them at once, an unchanged id-keyed
file from the cache, every natural key resolved in one bulk lookup per side, the
empty-source guard per source, and one failed source reported beside the others' pairs.

Its own module because it orchestrates the reads :mod:`syncd.engine.desired` defines
(what one source's facts become) for the reconciler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.plan import SourceStatus
from syncd.engine.desired import (
    Collected,
    Desired,
    SourceFactory,
    build_pairs,
    check_not_suddenly_empty,
    collect_keyed,
    key_specs,
    make_source,
    read_ids,
    resolve_side,
)
from syncd.engine.resolver import KeyResolver
from syncd.sources.base import Source, SourceError
from syncd.support.log import source_context

log = structlog.get_logger("syncd")


@dataclass
class _SourceRead:
    """One source's answer: its pairs, or the error that stopped it."""

    name: str
    type: str
    desired: Desired | None
    error: str | None = None
    label: str = ""

    def status(self) -> SourceStatus:
        d = self.desired
        if d is None:
            return SourceStatus(self.name, self.type, None, error=self.error)
        return SourceStatus(self.name, self.type, len(d.pairs), d.bad_records, len(d.unresolved))


class DesiredReader:
    """Reads sources; remembers the last read of each unchanged id-keyed file."""

    def __init__(
        self,
        resolver: KeyResolver,
        *,
        empty_source_guard: int,
        source_factory: SourceFactory = make_source,
    ) -> None:
        self.resolver = resolver
        self.empty_source_guard = empty_source_guard
        self.source_factory = source_factory
        self._cache: dict[tuple[str, str], tuple[str, Desired]] = {}
        """(relation, source) -> (source fingerprint, what it said) of the last read."""
        self.on_read: Callable[[RelationSettings, list[Source] | None], None] | None = None
        """Told after each read: the sources, when every one was read afresh and answered
        (syncd.engine.change indexes a NetBox read); None otherwise."""

    def forget(self) -> None:
        """Read every source again and look every key up again (a resync)."""
        self.resolver.invalidate()
        self._cache.clear()

    async def read(self, rel: RelationSettings, last_sizes: Mapping[str, int]) -> Desired:
        """The union of the relation's sources; an unchanged file source is not read again.

        ``last_sizes`` maps a source's name to its previous read's size, for the
        empty-source guard, which applies to each source on its own. With one
        ``source``, its failure raises SourceError; with ``sources = [...]``, a failed
        source is reported in ``Desired.sources`` and the others still count, unless
        every one failed.
        """
        named = rel.named_sources()
        natural = rel.source_key != "id" or rel.target_key != "id"
        reads: list[_SourceRead] = []
        made: list[Source] = []
        collected: list[tuple[_SourceRead, Source, Collected]] = []
        for (name, settings), outcome in zip(
            named,
            await asyncio.gather(
                *(self._collect(rel, i, name, natural) for i, (name, _) in enumerate(named)),
                return_exceptions=True,
            ),
            strict=True,
        ):
            read = _SourceRead(name, settings.type, None)
            reads.append(read)
            if isinstance(outcome, SourceError):
                read.error = str(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif isinstance(outcome[1], Desired):
                read.label, read.desired = outcome[0].label, outcome[1]
                made.append(outcome[0])
            else:
                made.append(outcome[0])
                read.label = outcome[0].label
                collected.append((read, outcome[0], outcome[1]))
        if collected:
            await self._resolve(rel, collected)
        for read in reads:
            if read.desired is None:
                continue
            what = f"source {read.name!r} ({read.label})" if rel.several_sources else read.label
            try:
                check_not_suddenly_empty(
                    what, read.desired.pairs, last_sizes.get(read.name, 0), self.empty_source_guard
                )
            except SourceError as exc:
                read.desired, read.error = None, str(exc)
        for read in reads:
            if read.error is not None and rel.several_sources:
                with source_context(read.name):
                    log.error("source_failed", error=read.error)
        self._tell(rel, reads, made)
        if all(read.desired is None for read in reads):
            if len(reads) == 1:
                raise SourceError(reads[0].error)
            raise SourceError(
                "every source failed: " + "; ".join(f"{read.name}: {read.error}" for read in reads)
            )
        return _union(reads)

    def _tell(self, rel: RelationSettings, reads: list[_SourceRead], made: list[Source]) -> None:
        """``on_read`` hears the sources when every one was read afresh and answered."""
        if self.on_read is not None:
            whole = all(r.desired is not None for r in reads) and len(made) == len(reads)
            self.on_read(rel, made if whole else None)

    async def _collect(
        self, rel: RelationSettings, index: int, name: str, natural: bool
    ) -> tuple[Source, Desired | Collected]:
        """One source's facts (or, for an unchanged id-keyed file, its cached answer)."""
        with source_context(name):
            source = self.source_factory(rel, index)
            fingerprint_of = getattr(source, "fingerprint", None)
            fingerprint = fingerprint_of() if callable(fingerprint_of) else None
            cached = self._cache.get((rel.name, name))
            if not natural and fingerprint is not None and cached and cached[0] == fingerprint:
                log.debug("source_unchanged", fingerprint=fingerprint)
                return source, cached[1]
            if natural:
                return source, await collect_keyed(rel, source)
            desired = await read_ids(source)
            if fingerprint is not None:
                self._cache[(rel.name, name)] = (fingerprint, desired)
            return source, desired

    async def _resolve(
        self, rel: RelationSettings, collected: list[tuple[_SourceRead, Source, Collected]]
    ) -> None:
        """Resolve the keys of every source at once (one bulk lookup per side), then build
        each source's pairs."""
        specs = key_specs(rel)
        everything = [fact for _, _, c in collected for fact in c.facts]
        maps = [
            await resolve_side(spec, side, everything, self.resolver)
            for side, spec in enumerate(specs)
        ]
        for read, source, c in collected:
            with source_context(read.name):
                read.desired = build_pairs(specs, maps, source, c, read.name)


def _union(reads: list[_SourceRead]) -> Desired:
    """The relation's desired state: every answering source's pairs, counts added up."""
    answered = [r.desired.pairs for r in reads if r.desired is not None]
    # One source: its set as it is (no copy of a million pairs; nobody changes it).
    out = Desired(answered[0] if len(answered) == 1 else set().union(*answered))
    for read in reads:
        out.sources.append(read.status())
        if read.desired is None:
            continue
        out.bad_records += read.desired.bad_records
        out.unresolved.extend(read.desired.unresolved)
        out.uncertainty = out.uncertainty.merged(read.desired.uncertainty)
        for key, count in read.desired.source_counts.items():
            out.source_counts[key] = out.source_counts.get(key, 0) + count
    return out
