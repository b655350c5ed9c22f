"""Which source a relation's ``source = {...}`` table describes, and building it.

``SourceSettings`` is a pydantic discriminated union on ``type``, so a config error
names the one source model that was meant ("relations[0].source.netbox.url: ...").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from syncd.sections import FileSourceSettings
from syncd.sources.base import Source
from syncd.sources.command import CommandSource, CommandSourceSettings
from syncd.sources.file import FileSource
from syncd.sources.filters import FilteredSource, FilterSettings
from syncd.sources.http import HttpSource, HttpSourceSettings
from syncd.sources.netbox import NetBoxSource, NetBoxSourceSettings

SourceSettings = Annotated[
    FileSourceSettings | HttpSourceSettings | NetBoxSourceSettings | CommandSourceSettings,
    Field(discriminator="type"),
]


def make_source(
    settings: SourceSettings, *, name: str, filters: FilterSettings | None = None
) -> Source:
    """The source for one relation (``name`` is the relation's, for logs and errors).

    With active ``filters`` the source is wrapped so only matching facts come out.
    """
    source: Source
    if isinstance(settings, HttpSourceSettings):
        source = HttpSource(settings, name=name)
    elif isinstance(settings, NetBoxSourceSettings):
        source = NetBoxSource(settings, name=name)
    elif isinstance(settings, CommandSourceSettings):
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
