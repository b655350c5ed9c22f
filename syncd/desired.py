"""The desired state: read a relation's source into pair keys.

Owns everything between the source's raw facts and a set of PairKeys: turning
values into ids (bad values are logged and skipped, never guessed), resolving
natural keys (names, IPs) through the CMDB in bulk, the cache that skips an
unchanged file, and the guard that refuses a suddenly empty answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from syncd.config import RelationSettings
from syncd.log import BadRecords, log_pairs
from syncd.outcome import LogLine, pair_fields
from syncd.pairs import MAX_ID, PairKey, pack, pack_raw
from syncd.resolver import KeyResolver, KeySpec
from syncd.sources import registry
from syncd.sources.base import RawValue, Source, SourceError

log = structlog.get_logger("syncd")


@dataclass
class Desired:
    """One read of a relation's source."""

    pairs: set[PairKey]
    bad_records: int = 0
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)
    """(side, key, origin) of keys that resolved to no instance (or to two)."""
    source_counts: dict[str, int] = field(default_factory=dict)
    """What the source counted besides bad records (filtered, ignored cables, pages)."""


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


def make_source(rel: RelationSettings) -> Source:
    """The source a relation's config describes, with its include/exclude filters."""
    return registry.make_source(rel.source, name=rel.name, filters=rel.filters)


def check_not_suddenly_empty(
    source: Source, desired: set[PairKey], last_size: int, threshold: int
) -> None:
    """An empty answer where the last one was large is a broken source, not a fact.

    An inventory that answers nothing (a truncated export, an API that lost
    its data) must not look like "no cabling at all". A resync (SIGHUP)
    accepts an intentionally emptied source.
    """
    if not desired and threshold and last_size >= threshold:
        raise SourceError(
            f"{source.label} returned no pairs, but {last_size} last time; treating the read "
            "as failed (send SIGHUP to accept an empty source)"
        )


class DesiredReader:
    """Reads sources; remembers the last read of each unchanged id-keyed file."""

    def __init__(
        self,
        resolver: KeyResolver,
        *,
        empty_source_guard: int,
        source_factory: Callable[[RelationSettings], Source] = make_source,
    ) -> None:
        self.resolver = resolver
        self.empty_source_guard = empty_source_guard
        self.source_factory = source_factory
        self._cache: dict[str, tuple[str, Desired]] = {}
        """relation -> (source fingerprint, what it said) of the last read."""

    def forget(self) -> None:
        """Read every source again and look every key up again (a resync)."""
        self.resolver.invalidate()
        self._cache.clear()

    async def read(self, rel: RelationSettings, last_size: int) -> Desired:
        """The desired pairs; an unchanged file source is not read again.

        ``last_size`` is the previous read's size, for the empty-source guard.
        """
        source = self.source_factory(rel)
        fingerprint_of = getattr(source, "fingerprint", None)
        fingerprint = fingerprint_of() if callable(fingerprint_of) else None
        natural = rel.source_key != "id" or rel.target_key != "id"
        cached = self._cache.get(rel.name)
        if not natural and fingerprint is not None and cached and cached[0] == fingerprint:
            log.debug("source_unchanged", fingerprint=fingerprint)
            return cached[1]
        if natural:
            desired = await read_with_keys(rel, source, self.resolver)
        else:
            desired = await read_ids(source)
        check_not_suddenly_empty(source, desired.pairs, last_size, self.empty_source_guard)
        if fingerprint is not None and not natural:
            self._cache[rel.name] = (fingerprint, desired)
        return desired


async def read_ids(source: Source) -> Desired:
    """Pull an id-keyed source into a set of pair keys; bad records are logged and skipped."""
    desired: set[PairKey] = set()
    add = desired.add
    bad = BadRecords(source.label)
    async for chunk in source.facts():
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


async def read_with_keys(rel: RelationSettings, source: Source, resolver: KeyResolver) -> Desired:
    """Facts named by natural keys (names, IPs): resolve them in bulk through the CMDB."""
    specs = (
        KeySpec(rel.bk_obj_id, rel.source_key),
        KeySpec(rel.bk_asst_obj_id, rel.target_key),
    )
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
    maps = [await _resolve_side(spec, side, facts, resolver) for side, spec in enumerate(specs)]
    desired = Desired(set(), bad.count + source.stats.bad, [], dict(source.stats.extra))
    reported: set[tuple[int, str]] = set()
    lines: list[LogLine] = []
    for fact in facts:
        ids: list[int] = []
        for side, spec in enumerate(specs):
            value = fact[side]
            found = value if isinstance(value, int) else maps[side].get(value)
            if found is None:
                if (side, str(value)) not in reported:
                    reported.add((side, str(value)))
                    lines.append(_unresolved(desired, side, spec, str(value), source, fact[2]))
                break
            ids.append(found)
        else:
            desired.pairs.add(pack(ids[0], ids[1]))
    log_pairs(lines)
    return desired


def _unresolved(
    desired: Desired, side: int, spec: KeySpec, key: str, source: Source, record: int
) -> LogLine:
    name = "source" if side == 0 else "target"
    origin = source.origin(record)
    desired.unresolved.append((name, key, origin))
    fields = pair_fields(
        "unresolved",
        "create",
        side=name,
        bk_obj_id=spec.bk_obj_id,
        attribute=spec.attribute,
        key=key,
        origin=origin,
    )
    return ("warning", fields)


async def _resolve_side(
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
