"""CSV for the file source: rows through the ``csv`` module, clean blocks of ids packed.

A million-line topology file read record by record costs a tuple, two strings and a
line number per line before any id exists. Most blocks of such a file are nothing but
digits, commas and newlines, one record a line: for those the ids come straight from
``str.split`` and ``map(int)``, with no object per record. Anything else (quotes,
blanks, spaces, a short line, a value out of range) returns None and the block goes
through the ``csv`` module, which reports it line by line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from syncd.core.pairs import PairKey, pack_columns
from syncd.sources.base import CHUNK_SIZE, PackedFacts, RawFact, ReadStats, SourceError


class _Fields(Protocol):
    @property
    def source_field(self) -> str: ...
    @property
    def target_field(self) -> str: ...


class FileRead(Protocol):
    """What the CSV reader needs of one pass over a file (``syncd.sources.file.FileRead``)."""

    @property
    def src(self) -> _Fields: ...

    path: Path
    stats: ReadStats
    dirty: bool
    packed: bool
    fast_lines: int

    def text_blocks(self, texts: Iterator[str]) -> Iterator[str]: ...
    def bad(self, line: int, reason: str) -> None: ...
    def undecodable(self, text: str, start: int = 0, end: int | None = None) -> bool: ...
    def bad_bytes(self) -> str: ...


@cache
def _short_line(width: int) -> re.Pattern[str]:
    """A line (between newlines) of digits with fewer than ``width - 1`` commas."""
    if width == 2:
        return re.compile(r"\n[0-9]*\n")
    return re.compile(r"\n[0-9]*(?:,[0-9]*){0,%s}\n".replace("%s", str(width - 2)))


def id_columns(text: str, width: int, src: int, dst: int) -> list[PairKey] | None:
    """The packed keys of a block of whole CSV lines (no trailing newline), or None.

    The block qualifies when every line is ``width`` non-empty ASCII-digit fields: then
    ``csv`` would give exactly these fields, stripped, and the engine's id check would
    accept every value the keys are built from.
    """
    if width < 2:
        return None
    if "\r" in text:
        # Lines ending in CRLF read as csv reads them; a lone CR is csv's business.
        if text.count("\r") != text.count("\r\n") + text.endswith("\r"):
            return None
        text = text.replace("\r\n", "\n").removesuffix("\r")
    bare = text.replace(",", "").replace("\n", "")
    if not (bare.isascii() and bare.isdigit()):
        return None
    lines = text.count("\n") + 1
    if text.count(",") != (width - 1) * lines:
        return None
    # Enough commas in all; none short means each line has exactly width - 1.
    if _short_line(width).search(f"\n{text}\n") is not None:
        return None
    fields = text.replace("\n", ",").split(",")
    if "" in fields:
        return None
    return pack_columns(fields[src::width], fields[dst::width])


PIECE = 1 << 18
"""Most text the fast path takes at once: its lists of fields are short-lived, and a
million-line file read in 1 MiB pieces left ~20 MB more resident than in 256 KiB ones."""


class LineFeed:
    """Lines for ``csv.reader`` (each with its newline back on), or pieces of whole lines.

    ``fenced``: the lines given to :meth:`load`, then the end (the reader stops, and
    the next piece may bypass it). Unfenced: everything left, then the end.
    """

    def __init__(self, blocks: Iterator[str]) -> None:
        self.blocks = blocks
        self.text: str | None = None  # the current block's text not yet read
        self.lines: list[str] = []
        self.pos = 0
        self.fenced = False

    def __iter__(self) -> LineFeed:
        return self

    def __next__(self) -> str:
        while self.pos >= len(self.lines):
            if self.fenced:
                raise StopIteration
            text = next(self.blocks) if self.text is None else self.text
            self.lines, self.pos, self.text = text.split("\n"), 0, None
        self.pos += 1
        return self.lines[self.pos - 1] + "\n"

    def load(self, text: str) -> None:
        """The reader reads ``text``'s lines next, and then stops."""
        self.lines, self.pos, self.fenced = text.split("\n"), 0, True

    def piece(self) -> str | None:
        """Up to :data:`PIECE` of the unread text, whole lines; None at the end."""
        if self.pos < len(self.lines):  # what the header's block has left
            self.text = "\n".join(self.lines[self.pos :])
            self.lines, self.pos = [], 0
        text = next(self.blocks, None) if self.text is None else self.text
        if text is None:
            return None
        cut = text.rfind("\n", 0, PIECE) if len(text) > PIECE else -1
        if cut < 0:
            self.text = None
            return text
        self.text = text[cut + 1 :]
        return text[:cut]


def csv_chunks(read: FileRead, texts: Iterator[str]) -> Iterator[list[RawFact] | PackedFacts]:
    # csv.reader reads one list item per physical line, so reader.line_num is the
    # line a record ends on; a record spanning lines (quoted newline) starts after
    # the previous one ended. Blank lines come back as [] and are counted.
    # Each line goes in with its newline back on, so a quoted field that spans lines
    # keeps it ("sw\n1" stays one unresolvable key, not the valid key "sw1").
    feed = LineFeed(read.text_blocks(texts))
    reader = csv.reader(feed)
    sf, tf = read.src.source_field, read.src.target_field
    header: list[str] | None = None
    for row in reader:
        if row and not (len(row) == 1 and not row[0].strip()):
            header = [h.strip() for h in row]
            break
        read.stats.blank += 1
    if header is None:
        raise SourceError(f"{read.path}: empty file, no CSV header row")
    missing = [f for f in (sf, tf) if f not in header]
    if missing:
        raise SourceError(
            f"{read.path}: CSV header has no column {', '.join(map(repr, missing))}"
            f" (columns: {', '.join(header)})"
        )
    columns = (len(header), header.index(sf), header.index(tf))
    read.fast_lines = 0  # lines read by the fast path, which reader.line_num misses
    if read.packed:
        # Whole blocks of plain ids skip the csv module; a block with a quote ends
        # that (a quoted field may run on into the next block).
        while (text := feed.piece()) is not None:
            keys = id_columns(text, *columns)
            if keys is not None:
                lines = text.count("\n") + 1
                read.stats.records += lines
                read.fast_lines += lines
                yield PackedFacts(keys)
                continue
            feed.load(text)
            if '"' in text:
                break
            yield from csv_records(read, reader, columns)
    feed.fenced = False
    yield from csv_records(read, reader, columns)


def csv_records(
    read: FileRead, reader: Any, columns: tuple[int, int, int]
) -> Iterator[list[RawFact]]:
    """The facts of the rows the reader has left; bad rows reported with their line."""
    stats = read.stats
    width, si, ti = columns
    sf, tf = read.src.source_field, read.src.target_field
    prev_end = reader.line_num + read.fast_lines
    facts: list[RawFact] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            read.bad(prev_end + 1, f"CSV error: {exc}")
            stats.records += 1
            prev_end = reader.line_num + read.fast_lines
            continue
        end = reader.line_num + read.fast_lines
        start, prev_end = prev_end + 1, end
        if len(row) == width:
            stats.records += 1
            s, t = row[si].strip(), row[ti].strip()
            if read.dirty and any(read.undecodable(f) for f in row):
                read.bad(start, read.bad_bytes())
            elif s and t:
                facts.append((s, t, start))
                if len(facts) >= CHUNK_SIZE:
                    yield facts
                    facts = []
            else:
                read.bad(start, f"empty {sf if not s else tf}")
        elif not row or (len(row) == 1 and not row[0].strip()):
            stats.blank += 1
        else:
            stats.records += 1
            if read.dirty and any(read.undecodable(f) for f in row):
                read.bad(start, read.bad_bytes())
            else:
                read.bad(start, f"{len(row)} fields, header has {width}")
    if facts:
        yield facts
