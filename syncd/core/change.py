"""Which pairs one cable contributes, and what a change of some cables does to them. Pure.

A NetBox webhook names one object; applying it at once needs to know what that
object gave before. :class:`RecordIndex` keeps, per record (cable), the devices at
its ends and the facts (raw key pairs) it gave, and how many records give each fact,
so two cables between the same switch and host are one fact that goes only when
both have gone. :meth:`RecordIndex.preview` says what replacing some records would
add and remove without changing anything; :meth:`RecordIndex.commit` then makes it so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

F = TypeVar("F", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Entry(Generic[F]):
    """One record: the devices at its ends and the facts it gives (duplicates kept)."""

    devices: frozenset[int]
    facts: tuple[F, ...]


@dataclass(frozen=True, slots=True)
class Delta(Generic[F]):
    """What replacing some records changes: facts that now have a record and had none
    (``entered``), facts that had one and now have none (``left``)."""

    entered: frozenset[F]
    left: frozenset[F]
    records: Mapping[int, Entry[F]]
    """The records as they will be after commit (an empty entry: the record is gone)."""

    @property
    def empty(self) -> bool:
        return not self.entered and not self.left


@dataclass
class RecordIndex(Generic[F]):
    """Records -> facts, with a count of records per fact."""

    records: dict[int, Entry[F]] = field(default_factory=dict)
    counts: Counter[F] = field(default_factory=Counter)

    @classmethod
    def build(cls, records: Mapping[int, Entry[F]]) -> RecordIndex[F]:
        index: RecordIndex[F] = cls()
        for record, entry in records.items():
            if entry.devices or entry.facts:
                index.records[record] = entry
                index.counts.update(set(entry.facts))
        return index

    def facts(self) -> set[F]:
        """Every fact some record gives (what a full read would say)."""
        return set(self.counts)

    def records_of(self, devices: Iterable[int]) -> set[int]:
        """The records with an end on any of ``devices``."""
        wanted = set(devices)
        if not wanted:
            return set()
        return {r for r, e in self.records.items() if e.devices & wanted}

    def preview(self, changed: Mapping[int, Entry[F]]) -> Delta[F]:
        """What replacing each record of ``changed`` would do; changes nothing."""
        delta: Counter[F] = Counter()
        for record, entry in changed.items():
            old = self.records.get(record)
            for fact in set(old.facts) if old is not None else ():
                delta[fact] -= 1
            for fact in set(entry.facts):
                delta[fact] += 1
        entered = frozenset(f for f, d in delta.items() if d > 0 and self.counts[f] == 0)
        left = frozenset(f for f, d in delta.items() if d < 0 and self.counts[f] + d <= 0)
        return Delta(entered, left, dict(changed))

    def commit(self, delta: Delta[F]) -> None:
        """Make ``delta`` (from :meth:`preview` on this index, unchanged since) true."""
        touched: set[F] = set()
        for record, entry in delta.records.items():
            old = self.records.pop(record, None)
            if old is not None:
                touched.update(old.facts)
                self.counts.subtract(set(old.facts))
            if entry.devices or entry.facts:
                self.records[record] = entry
                self.counts.update(set(entry.facts))
        for fact in touched:
            if self.counts[fact] <= 0:
                del self.counts[fact]
