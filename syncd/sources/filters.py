"""Include/exclude filters per relation, as a wrapper around any source.

Patterns are shell globs (``fnmatch``, case-sensitive) on the source key and/or the
target key as text. A fact passes when it matches at least one include pattern of each
side that has some (no include patterns: everything is included) and no exclude
pattern of either side. Filtered facts are counted, not logged one by one: they are
the operator's intent, not an error.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from fnmatch import translate

from pydantic import Field

from syncd.sources.base import RawFact, RawValue, ReadStats, Source
from syncd.support.sections import _Section


class FilterSettings(_Section):
    """Glob patterns on the keys as the source spells them (e.g. ``sw-*``, ``10.1.*``)."""

    include_source: list[str] = Field(default_factory=list)
    exclude_source: list[str] = Field(default_factory=list)
    include_target: list[str] = Field(default_factory=list)
    exclude_target: list[str] = Field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(
            self.include_source or self.exclude_source or self.include_target or self.exclude_target
        )


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


def _text(value: RawValue) -> str:
    return "" if value is None else str(value)


class FilteredSource:
    """A source that passes on only the facts its filters let through."""

    def __init__(self, inner: Source, settings: FilterSettings) -> None:
        self.inner = inner
        self.settings = settings
        self.label = inner.label
        self._inc_src = _compile(settings.include_source)
        self._exc_src = _compile(settings.exclude_source)
        self._inc_dst = _compile(settings.include_target)
        self._exc_dst = _compile(settings.exclude_target)
        self.filtered = 0

    def origin(self, record: int) -> str:
        return self.inner.origin(record)

    @property
    def stats(self) -> ReadStats:
        stats = self.inner.stats
        stats.extra["filtered"] = self.filtered
        return stats

    def keep(self, src: RawValue, dst: RawValue) -> bool:
        s, d = _text(src), _text(dst)
        if self._inc_src is not None and not self._inc_src.match(s):
            return False
        if self._inc_dst is not None and not self._inc_dst.match(d):
            return False
        if self._exc_src is not None and self._exc_src.match(s):
            return False
        return not (self._exc_dst is not None and self._exc_dst.match(d))

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        self.filtered = 0
        async for chunk in self.inner.facts():
            kept = [f for f in chunk if self.keep(f[0], f[1])]
            self.filtered += len(chunk) - len(kept)
            if kept:
                yield kept
