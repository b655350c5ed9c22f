"""The file source: CSV with a header row, JSON Lines, or a JSON array of objects.

Why it is built this way:

* Streaming: the file is read in blocks through an incremental decoder, and parsed into
  chunks of at most CHUNK_SIZE facts, so a million-line file never needs a million
  records (or the whole text) in memory. The JSON array streams too, element by element
  with ``JSONDecoder.raw_decode`` over a sliding buffer (syncd.sources.jsonstream).
* Off the event loop: reading and parsing run in a worker thread, one ``to_thread`` hop
  per chunk, so the loop keeps serving HTTP answers while a big file is parsed.
* One bad line must not kill the file: bytes the encoding cannot decode are kept as
  lone surrogates (``surrogateescape``) and any record containing one is reported as bad
  and skipped. Valid text never contains lone surrogates, so this costs nothing on clean
  files (one ``isascii``/regex scan per block).
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any, Literal

from syncd.sources.base import CHUNK_SIZE, PackedFacts, RawFact, ReadStats, SourceError
from syncd.sources.csvfile import csv_chunks
from syncd.sources.jsonstream import (
    DECODER,
    MISSING,
    SCALARS,
    WS,
    json_array_chunks,
    unparsable,
)
from syncd.support.log import BadRecords
from syncd.support.secretfile import open_regular

FileFormat = Literal["auto", "csv", "jsonl", "json"]

READ_SIZE = 1 << 20
"""Bytes read per block; the JSON array buffer holds about this much text."""


_EXTENSIONS: dict[str, Literal["csv", "jsonl", "json"]] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_SURROGATE = re.compile("[\udc80-\udcff]")
_BAD_BYTES = "invalid bytes for encoding {enc}"


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """(size, mtime_ns, inode): what changes when a file is written or replaced."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _dirty(text: str) -> bool:
    """Does decoded text hold bytes the encoding could not decode?"""
    return not text.isascii() and _SURROGATE.search(text) is not None


class FileRead:
    """One pass over the file; runs entirely in worker threads."""

    def __init__(self, src: FileSource) -> None:
        self.src = src
        self.path = src.path
        self.stats = src.stats
        self.reporter = BadRecords(src.label)
        self.dirty = False  # some block held undecodable bytes: check records for them
        self.packed = False  # clean CSV blocks come as PackedFacts (FileSource.id_facts)
        self.fast_lines = 0

    # -- reporting

    def bad(self, line: int, reason: str) -> None:
        self.stats.bad += 1
        self.reporter.add(self.src.origin(line), reason)

    def finish(self) -> None:
        self.reporter.finish()

    def undecodable(self, text: str, start: int = 0, end: int | None = None) -> bool:
        """Does ``text[start:end]`` hold bytes the encoding could not decode?"""
        return _SURROGATE.search(text, start, len(text) if end is None else end) is not None

    def bad_bytes(self) -> str:
        """The bad-record reason for undecodable bytes."""
        return _BAD_BYTES.format(enc=self.src.encoding)

    # -- raw text

    def texts(self) -> Generator[str, None, None]:
        """Decoded text blocks, BOM removed; undecodable bytes become lone surrogates."""
        try:
            fd = open_regular(self.path)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.path}: file not found") from exc
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc
        except ValueError as exc:  # a FIFO would block, /dev/zero never ends
            raise SourceError(f"{self.path}: {exc}; refusing to read it") from None
        fh = os.fdopen(fd, "rb")
        opened = _identity(os.fstat(fd))
        decoder = codecs.getincrementaldecoder(self.src.encoding)(errors="surrogateescape")
        first = True
        try:
            while True:
                try:
                    data = fh.read(self.src.read_size)
                except OSError as exc:
                    raise SourceError(f"{self.path}: read failed: {exc.strerror or exc}") from exc
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as exc:  # only codecs surrogateescape can't cover
                    raise SourceError(
                        f"{self.path}: cannot be decoded as {self.src.encoding}: {exc}"
                    ) from exc
                if first and text:
                    text = text.removeprefix("\ufeff")
                    first = False
                if text:
                    if not self.dirty and _dirty(text):
                        self.dirty = True
                    yield text
                if not data:
                    self.check_unchanged(opened, os.fstat(fd))
                    return
        finally:
            fh.close()

    def check_unchanged(self, opened: tuple[int, int, int], now: os.stat_result) -> None:
        """A file written to (or replaced) while we read it may have given us a mix of
        old and new records, or half a line: fail the read, the next cycle reads it whole."""
        try:
            at_path = _identity(os.stat(self.path))
        except OSError:
            at_path = None
        if _identity(now) != opened or at_path != opened:
            raise SourceError(
                f"{self.path}: the file changed while it was being read; nothing from this "
                "read is used, the next cycle reads it again (write it elsewhere and rename it "
                "into place to avoid this)"
            )

    def text_blocks(self, texts: Iterator[str]) -> Iterator[str]:
        """Runs of consecutive whole lines (joined, without the last newline), in file order."""
        carry = ""
        for text in texts:
            text = carry + text
            cut = text.rfind("\n")
            if cut < 0:
                carry = text
                continue
            carry = text[cut + 1 :]
            yield text[:cut]
        if carry:
            yield carry

    def line_blocks(self, texts: Iterator[str]) -> Iterator[list[str]]:
        """Lists of consecutive whole lines (without the newline), in file order."""
        for block in self.text_blocks(texts):
            yield block.split("\n")

    # -- formats

    def chunks(self) -> Generator[list[RawFact] | PackedFacts, None, None]:
        raw = self.texts()
        try:
            yield from self._chunks(raw)
        finally:
            raw.close()  # closes the file now, also when the consumer stopped early

    def _chunks(self, texts: Iterator[str]) -> Iterator[list[RawFact] | PackedFacts]:
        fmt = self.src.format
        if fmt == "auto":
            fmt = _EXTENSIONS.get(self.path.suffix.lower(), "auto")
        if fmt == "auto":
            peeked: list[str] = []
            for text in texts:
                peeked.append(text)
                stripped = text.lstrip(WS)
                if stripped:
                    fmt = "json" if stripped[0] == "[" else "jsonl" if stripped[0] == "{" else "csv"
                    break
            texts = itertools.chain(peeked, texts)
            if fmt == "auto":  # empty or blank file: nothing to yield
                self.stats.blank += sum(len(b) for b in self.line_blocks(texts))
                return
        if fmt == "csv":
            yield from csv_chunks(self, texts)
        elif fmt == "jsonl":
            yield from self.jsonl_chunks(texts)
        else:
            yield from json_array_chunks(self, texts)
        self.finish()

    def jsonl_chunks(self, texts: Iterator[str]) -> Iterator[list[RawFact]]:
        stats = self.stats
        raw_decode = DECODER.raw_decode
        sf, tf, scalars = self.src.source_field, self.src.target_field, SCALARS
        lineno = 0
        facts: list[RawFact] = []
        for block in self.line_blocks(texts):
            for line in block:
                lineno += 1
                text = line.strip(WS)
                if not text:
                    stats.blank += 1
                    continue
                stats.records += 1
                if self.dirty and _SURROGATE.search(text):
                    self.bad(lineno, _BAD_BYTES.format(enc=self.src.encoding))
                    continue
                try:
                    obj, end = raw_decode(text)
                except json.JSONDecodeError as exc:
                    self.bad(lineno, f"broken JSON: {exc.msg} at column {exc.colno}")
                    continue
                except (ValueError, RecursionError) as exc:
                    self.bad(lineno, unparsable(exc))
                    continue
                if end != len(text):
                    self.bad(lineno, f"broken JSON: extra data at column {end + 1}")
                    continue
                if type(obj) is dict:
                    s, t = obj.get(sf, MISSING), obj.get(tf, MISSING)
                    if type(s) in scalars and type(t) in scalars:
                        facts.append((s, t, lineno))
                        if len(facts) >= CHUNK_SIZE:
                            yield facts
                            facts = []
                        continue
                self.bad_fact(obj, lineno)
        if facts:
            yield facts

    def bad_fact(self, obj: Any, lineno: int) -> None:
        """Report why a decoded JSON record is not a fact (the slow path)."""
        if not isinstance(obj, dict):
            self.bad(lineno, f"record is {type(obj).__name__}, not an object")
            return
        for name in (self.src.source_field, self.src.target_field):
            value = obj.get(name, MISSING)
            if value is MISSING:
                self.bad(lineno, f"missing {name}")
                return
            if type(value) not in SCALARS:
                self.bad(lineno, f"{name} is {type(value).__name__}, not a scalar")
                return


class FileSource:
    """Relationship facts from a local file (CSV, JSON Lines or a JSON array).

    Bad records are logged as ``bad_record`` warnings with ``path:line`` and skipped;
    blank lines are counted only. A missing or unreadable file, a CSV header without
    the key columns, or a structurally broken JSON array raise SourceError. For a broken
    array the error comes when the parser reaches the break, so the chunks before it
    have already been yielded; the engine must treat the read as failed (it does for
    any SourceError) and not act on the partial set.
    """

    def __init__(
        self,
        path: Path,
        format: FileFormat = "auto",
        source_field: str = "bk_inst_id",
        target_field: str = "bk_asst_inst_id",
        encoding: str = "utf-8",
        *,
        read_size: int = READ_SIZE,
    ) -> None:
        if format not in ("auto", "csv", "jsonl", "json"):
            raise ValueError(f"unknown file format {format!r}")
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {encoding!r}") from exc
        if read_size < 1:
            raise ValueError("read_size must be positive")
        self.path = Path(path)
        self.format: FileFormat = format
        self.source_field = source_field
        self.target_field = target_field
        self.encoding = encoding
        self.read_size = read_size
        self.label = f"file:{path}"
        self._stats = ReadStats()

    def origin(self, record: int) -> str:
        return f"{self.path}:{record}"

    @property
    def stats(self) -> ReadStats:
        return self._stats

    def fingerprint(self) -> str | None:
        """Cheap change detection: size, mtime and inode; None if the file is missing."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        """Yield facts in chunks of at most CHUNK_SIZE, parsing in a worker thread."""
        async for chunk in self._read(packed=False):
            assert not isinstance(chunk, PackedFacts)
            yield chunk

    async def id_facts(self) -> AsyncIterator[list[RawFact] | PackedFacts]:
        """:meth:`facts` for id-keyed relations: clean CSV blocks come already packed."""
        async for chunk in self._read(packed=True):
            yield chunk

    async def _read(self, *, packed: bool) -> AsyncIterator[list[RawFact] | PackedFacts]:
        self._stats = ReadStats()
        read = FileRead(self)
        read.packed = packed
        gen = read.chunks()
        lock = threading.Lock()
        abandoned = False

        def step() -> list[RawFact] | PackedFacts | None:
            with lock:
                chunk = next(gen, None)
                if abandoned:  # the consumer left while we were parsing: close here
                    gen.close()
                return chunk

        try:
            while (chunk := await asyncio.to_thread(step)) is not None:
                yield chunk
        finally:
            abandoned = True
            if lock.acquire(blocking=False):  # else the running step closes it
                try:
                    gen.close()
                finally:
                    lock.release()
