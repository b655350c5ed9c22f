"""Building a relation's source from its settings (``syncd.sources.settings``)."""

from __future__ import annotations

from syncd.sources.base import Source
from syncd.sources.file import FileSource
from syncd.sources.filters import FilteredSource, FilterSettings
from syncd.sources.settings import (
    CommandSourceSettings,
    HttpSourceSettings,
    NetBoxSourceSettings,
    SourceSettings,
)

__all__ = ["SourceSettings", "make_source"]


def make_source(
    settings: SourceSettings, *, name: str, filters: FilterSettings | None = None
) -> Source:
    """The source for one relation (``name`` is the relation's, for logs and errors).

    With active ``filters`` the source is wrapped so only matching facts come out. A
    source type's module is imported when a relation uses it (start-up cost).
    """
    source: Source
    if isinstance(settings, HttpSourceSettings):
        from syncd.sources.http import HttpSource

        source = HttpSource(settings, name=name)
    elif isinstance(settings, NetBoxSourceSettings):
        from syncd.sources.netbox import NetBoxSource

        source = NetBoxSource(settings, name=name)
    elif isinstance(settings, CommandSourceSettings):
        from syncd.sources.command import CommandSource

        source = CommandSource(settings, name=name)
    else:
        source = FileSource(
            settings.path,
            format=settings.format,
            source_field=settings.source_field,
            target_field=settings.target_field,
            encoding=settings.encoding,
        )
    if filters is not None and filters.active:
        return FilteredSource(source, filters)
    return source
