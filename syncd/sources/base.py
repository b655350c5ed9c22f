"""The interface every topology source implements.

A source yields *raw facts*: the two key values of a relationship as the source
spells them (CSV text, JSON scalars) plus a record number for error messages.
Turning values into CMDB instance ids is the engine's job, so every source
stays small and the "not an integer" error is reported in one place.
Facts come in chunks so that a million-line source never needs a million
objects alive at once, and the event loop gets a turn between chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

RawValue = str | int | float | bool | None
RawFact = tuple[RawValue, RawValue, int]
"""(source value, target value, record number: the line, or index for arrays)."""

CHUNK_SIZE = 10_000


@dataclass(slots=True)
class PackedFacts:
    """Facts already turned into pair keys: a run of records that were plainly valid ids.

    A source's fast path for id-keyed relations (``id_facts``); anything it could not
    vouch for still comes as RawFacts, so bad records are reported as usual.
    """

    keys: list[int]


class SourceError(Exception):
    """The source as a whole could not be read; the relation's cycle fails, state is kept."""


@dataclass
class ReadStats:
    """What one read of a source saw: counted by the source, logged by the engine."""

    records: int = 0
    bad: int = 0
    blank: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Source(Protocol):
    """Pulls relationship facts for one relation."""

    label: str
    """Short human name for logs, e.g. ``file:config/demo/topology.csv``."""

    def origin(self, record: int) -> str:
        """Where a record came from, for error lines: ``topology.csv:12``."""
        ...

    def facts(self) -> AsyncIterator[list[RawFact]]:
        """Yield the facts in chunks; bad records are logged and counted, not raised.

        Raises SourceError when the source as a whole cannot be read.
        """
        ...

    @property
    def stats(self) -> ReadStats:
        """Counters of the last (or current) read."""
        ...


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret in a text meant for a log or an error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def chunked(facts: list[RawFact]) -> Iterator[list[RawFact]]:
    for i in range(0, len(facts), CHUNK_SIZE):
        yield facts[i : i + CHUNK_SIZE]
