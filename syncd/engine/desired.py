"""The desired state: what one source's facts become as pair keys.

Owns everything between a source's raw facts and a set of PairKeys: turning values
into ids (bad values are logged and skipped, never guessed), resolving natural keys
(names, IPs) through the CMDB in bulk, and the guard that refuses a suddenly empty
answer. :mod:`syncd.engine.reader` reads a relation's sources with these each cycle.
"""

from __future__ import annotations

from collections.abc import Callable
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
from syncd.support.log import BadRecords, log_pairs

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
