"""The desired state: read a relation's source into pair keys.

Owns everything between the source's raw facts and a set of PairKeys: turning
values into ids (bad values are logged and skipped, never guessed), resolving
natural keys (names, IPs) through the CMDB in bulk, the cache that skips an
unchanged file, and the guard that refuses a suddenly empty answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.outcome import LogLine, pair_fields
from syncd.core.pairs import MAX_ID, PairKey, pack, pack_raw
from syncd.core.plan import SourceStatus, UnresolvedKey
from syncd.core.uncertain import CERTAIN, OpenSides, Uncertainty
from syncd.engine.resolver import KeyResolver, KeySpec
from syncd.sources import registry
from syncd.sources.base import PackedFacts, RawValue, Source, SourceError
from syncd.support.log import BadRecords, log_pairs, source_context

log = structlog.get_logger("syncd")


@dataclass
class Desired:
    """One read of a relation's sources: the union of what they said."""

    pairs: set[PairKey]
    bad_records: int = 0
    unresolved: list[UnresolvedKey] = field(default_factory=list)
    """Keys that resolved to no instance (or to two), each with its record and source."""
    source_counts: dict[str, int] = field(default_factory=dict)
    """What the sources counted besides bad records (filtered, ignored cables, pages)."""
    sources: list[SourceStatus] = field(default_factory=list)
    """Each source's answer, in configuration order."""
    uncertainty: Uncertainty = CERTAIN
    """Which known pairs facts with an unresolved key could still mean (never pruned)."""

    @property
    def failed(self) -> dict[str, str]:
        """The sources that did not answer this cycle: name -> error."""
        return {s.name: s.error for s in self.sources if s.error is not None}

    @property
    def failure(self) -> str | None:
        """The relation's error when a source failed (the others' creates still go out)."""
        failed = self.failed
        if not failed:
            return None
        return "; ".join(f"source {name!r} failed: {error}" for name, error in failed.items())


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


def to_key(value: RawValue) -> str:
    """A natural key from a source value: a non-empty string."""
    if value is None or isinstance(value, bool):
        raise BadValue(f"{value!r} is not a key")
    key = str(value).strip()
    if not key:
        raise BadValue("empty key")
    return key


SourceFactory = Callable[[RelationSettings, int], Source]
"""Builds the relation's source number ``index`` (tests plug in their own)."""


def make_source(rel: RelationSettings, index: int = 0) -> Source:
    """A relation's source (the ``index``-th of several), with its include/exclude filters."""
    settings = rel.source_settings()[index]
    return registry.make_source(settings, name=rel.name, filters=rel.filters)


def size_key(rel: RelationSettings, source: str) -> str:
    """Where a source's last size is kept: the relation's own for a single ``source``;
    ``relation/source`` for one of several (relation and source names have no ``/``)."""
    return f"{rel.name}/{source}" if rel.several_sources else rel.name


def check_not_suddenly_empty(
    what: str, desired: set[PairKey], last_size: int, threshold: int
) -> None:
    """An empty answer where the last one was large is a broken source, not a fact.

    An inventory that answers nothing (a truncated export, an API that lost
    its data) must not look like "no cabling at all". A resync (SIGHUP)
    accepts an intentionally emptied source.
    """
    if not desired and threshold and last_size >= threshold:
        raise SourceError(
            f"{what} returned no pairs, but {last_size} last time; treating the read "
            "as failed (send SIGHUP to accept an empty source)"
        )


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


async def read_ids(source: Source) -> Desired:
    """Pull an id-keyed source into a set of pair keys; bad records are logged and skipped."""
    desired: set[PairKey] = set()
    add = desired.add
    bad = BadRecords(source.label)
    id_facts = getattr(source, "id_facts", None)  # a source that can pack clean runs
    chunks = id_facts() if callable(id_facts) else source.facts()
    async for chunk in chunks:
        if type(chunk) is PackedFacts:
            desired.update(chunk.keys)
            continue
        # Clean chunks (the usual case) convert at C speed; one bad value sends the
        # chunk through to_id, record by record, which names it.
        keys = pack_raw([f[0] for f in chunk], [f[1] for f in chunk])
        if keys is not None:
            desired.update(keys)
            continue
        for src_raw, dst_raw, record in chunk:
            try:
                add(pack(to_id(src_raw), to_id(dst_raw)))
            except BadValue as exc:
                bad.add(source.origin(record), str(exc))
    bad.finish()
    return Desired(desired, bad.count + source.stats.bad, [], dict(source.stats.extra))


Fact = tuple[str | int, str | int, int]


@dataclass
class Collected:
    """A natural-keyed source's facts before their keys are resolved."""

    facts: list[Fact]
    bad: int
    counts: dict[str, int]


def key_specs(rel: RelationSettings) -> tuple[KeySpec, KeySpec]:
    return (
        KeySpec(rel.bk_obj_id, rel.source_key),
        KeySpec(rel.bk_asst_obj_id, rel.target_key),
    )


async def collect_keyed(rel: RelationSettings, source: Source) -> Collected:
    """Facts named by natural keys (names, IPs), checked but not yet resolved."""
    specs = key_specs(rel)
    facts: list[Fact] = []
    bad = BadRecords(source.label)
    async for chunk in source.facts():
        for src_raw, dst_raw, record in chunk:
            try:
                pair = tuple(
                    to_id(raw) if spec.is_id else to_key(raw)
                    for spec, raw in zip(specs, (src_raw, dst_raw), strict=True)
                )
            except BadValue as exc:
                bad.add(source.origin(record), str(exc))
                continue
            facts.append((pair[0], pair[1], record))
    bad.finish()
    return Collected(facts, bad.count + source.stats.bad, dict(source.stats.extra))


def build_pairs(
    specs: tuple[KeySpec, KeySpec],
    maps: list[dict[str, int]],
    source: Source,
    collected: Collected,
    name: str,
    *,
    quiet: bool = False,
) -> Desired:
    """One source's pairs from its facts and the resolved keys; unresolved keys are logged
    once per source and side (``quiet``: not logged)."""
    desired = Desired(set(), collected.bad, [], dict(collected.counts))
    reported: set[tuple[int, str]] = set()
    lines: list[LogLine] = []
    open_sides = OpenSides()
    for fact in collected.facts:
        found = [
            value if isinstance(value, int) else maps[side].get(value)
            for side, value in enumerate(fact[:2])
        ]
        if found[0] is not None and found[1] is not None:
            desired.pairs.add(pack(found[0], found[1]))
            continue
        origin = source.origin(fact[2])
        open_sides.add(fact[0], fact[1], found[0], found[1], origin)
        side = 0 if found[0] is None else 1
        value = str(fact[side])
        if (side, value) not in reported:
            reported.add((side, value))
            key = UnresolvedKey("source" if side == 0 else "target", value, origin, name)
            desired.unresolved.append(key)
            lines.append(_unresolved_line(specs[side], key))
    desired.uncertainty = open_sides.uncertainty()
    if not quiet:
        log_pairs(lines)
    return desired


def _unresolved_line(spec: KeySpec, key: UnresolvedKey) -> LogLine:
    fields = pair_fields(
        "unresolved",
        "create",
        side=key.side,
        bk_obj_id=spec.bk_obj_id,
        attribute=spec.attribute,
        key=key.key,
        origin=key.origin,
    )
    return ("warning", fields)


async def resolve_side(
    spec: KeySpec, side: int, facts: list[Fact], resolver: KeyResolver
) -> dict[str, int]:
    if spec.is_id:
        return {}
    res = await resolver.resolve(spec, {str(f[side]) for f in facts})
    for key, candidates in sorted(res.ambiguous.items()):
        log.error(
            "ambiguous_key",
            bk_obj_id=spec.bk_obj_id,
            attribute=spec.attribute,
            key=key,
            ids=candidates,
            hint="two instances carry this key; syncd will not guess: fix the CMDB data",
        )
    return res.ids
