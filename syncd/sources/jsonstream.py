"""Streaming a top-level JSON array, element by element, out of decoded text blocks.

Split from syncd.sources.file (issue 14: modules under ~400 lines) because the array
parser is the one delicate part of the file source: ``JSONDecoder.raw_decode`` over a
sliding buffer, never taking a value cut by a block boundary for a shorter one, and
guards for valid JSON that Python will not build (nesting too deep, integers of
thousands of digits), which are skipped by a scan without recursion. The JSON Lines
reader in syncd.sources.file shares the decoder and the ``unparsable`` reasons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from syncd.sources.base import CHUNK_SIZE, RawFact, ReadStats, SourceError


class Fields(Protocol):
    @property
    def source_field(self) -> str: ...
    @property
    def target_field(self) -> str: ...


class ArrayRead(Protocol):
    """What the scanner needs of the file read it serves (syncd.sources.file.FileRead)."""

    @property
    def src(self) -> Fields: ...
    @property
    def path(self) -> Path: ...
    @property
    def stats(self) -> ReadStats: ...
    @property
    def dirty(self) -> bool: ...

    def bad(self, line: int, reason: str) -> None: ...
    def bad_fact(self, obj: Any, lineno: int) -> None: ...
    def bad_bytes(self) -> str: ...
    def undecodable(self, text: str, start: int = 0, end: int | None = None) -> bool: ...


MAX_ELEMENT = 16 << 20
"""A JSON array element larger than this (in characters) is treated as broken."""

WS = " \t\r\n"
MISSING = object()
DECODER = json.JSONDecoder()
SCALARS = frozenset({str, int, float, bool, type(None)})  # what json decodes to RawValue
_STRUCTURE = re.compile(r'[\[\]{}"]')
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL)


def unparsable(exc: BaseException) -> str:
    """Why valid-looking JSON was not decoded, in one short line."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deep"
    text = str(exc)
    if "integer string conversion" in text:
        return "a number with too many digits"
    return f"broken JSON: {text[:120]}"


def _value_end(buf: str, pos: int) -> int | None:
    """Where the JSON value at ``pos`` ends, scanning without recursion; None if the
    buffer ends first (or the value is not a container or a number)."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first not in "[{":
        end = pos
        while end < len(buf) and buf[end] in "0123456789+-.eE":
            end += 1
        return end if end > pos and end < len(buf) else None
    depth = 0
    i = pos
    while (m := _STRUCTURE.search(buf, i)) is not None:
        ch = m.group()
        i = m.end()
        if ch == '"':
            closing = _STRING_REST.match(buf, i)
            if closing is None:
                return None
            i = closing.end()
        elif ch in "[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return i
    return None


def json_array_chunks(read: ArrayRead, texts: Iterator[str]) -> Iterator[list[RawFact]]:
    """Stream the elements of one top-level JSON array (see :class:`ArrayScanner`)."""
    return ArrayScanner(read, texts).chunks()


class ArrayScanner:
    """A small state machine over one top-level JSON array: ``[`` first, then an element
    and a separator in turn (``,`` or the closing ``]``), then nothing but blanks.

    ``buf[pos:]`` is unparsed text; ``line`` is the line number at ``line_pos``.
    An element is accepted only if it ends before the buffer does (or at EOF), so a
    value cut by a block boundary (``12|34``) is never taken for a shorter one. A
    decode error near the buffer's end means "read more"; elsewhere it means broken.
    """

    def __init__(self, read: ArrayRead, texts: Iterator[str]) -> None:
        self.read = read
        self.texts = texts
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.line_pos = 1, 0
        self.facts: list[RawFact] = []

    def chunks(self) -> Iterator[list[RawFact]]:
        self._open()
        if self.buf[self.pos] == "]":
            self.pos += 1
        else:
            while True:
                self._element()
                if len(self.facts) >= CHUNK_SIZE:
                    yield self.facts
                    self.facts = []
                if self._separator():
                    break
        if self.facts:
            yield self.facts
        if self._skip_ws():
            raise self._broken("data after the closing ']'")

    # -- the states -------------------------------------------------------------------

    def _open(self) -> None:
        """Before the array: blanks, then ``[``, then something."""
        if not self._skip_ws():
            raise self._broken("empty file, expected a JSON array")
        if self.buf[self.pos] != "[":
            hint = " (one object per line? use format 'jsonl')" if self.buf[self.pos] == "{" else ""
            raise self._broken(f"the file does not start with '['{hint}")
        self.pos += 1
        if not self._skip_ws():
            raise self._broken("unexpected end of file, ']' missing")

    def _element(self) -> None:
        """One element, decoded (or skipped as unbuildable) and taken as a fact or a bad record."""
        while True:
            start = self.pos
            unbuilt: str | None = None
            try:
                obj, end = DECODER.raw_decode(self.buf, self.pos)
                if end == len(self.buf) and not self.eof:
                    raise json.JSONDecodeError("value may continue", self.buf, end)
            except json.JSONDecodeError as exc:
                if self._cut(exc, start):
                    continue
                self.pos = exc.pos
                raise self._broken(exc.msg) from None
            except (ValueError, RecursionError) as exc:
                end = self._skip_unbuildable(exc)
                start, obj, unbuilt = self.pos, None, unparsable(exc)
            break
        self._take(self.line_at(start), obj, start, end, unbuilt)
        self.pos = end

    def _separator(self) -> bool:
        """After an element: ``,`` and another element, or ``]``; True when the array closed."""
        if not self._skip_ws():
            raise self._broken("unexpected end of file, ']' missing")
        if self.buf[self.pos] == "]":
            self.pos += 1
            return True
        if self.buf[self.pos] != ",":
            raise self._broken(f"expected ',' or ']', found {self.buf[self.pos]!r}")
        self.pos += 1
        if not self._skip_ws():
            raise self._broken("unexpected end of file after ','")
        if self.buf[self.pos] == "]":
            raise self._broken("trailing ',' before ']'")
        return False

    # -- an element -------------------------------------------------------------------

    def _cut(self, exc: json.JSONDecodeError, start: int) -> bool:
        """Is the element cut by the buffer's end? Then more text is read (True)."""
        incomplete = exc.msg.startswith("Unterminated string") or (exc.pos >= len(self.buf) - 16)
        if self.eof or not incomplete:
            return False
        if len(self.buf) - start > MAX_ELEMENT:
            raise self._broken(f"element larger than {MAX_ELEMENT} characters") from None
        self._more()  # pos is still the element's start; more() may move both
        return True

    def _skip_unbuildable(self, exc: Exception) -> int:
        """Valid JSON that Python will not build (nested too deep, an integer of thousands
        of digits): the element's end, found by scanning. The buffer at least doubles
        between scans: linear, whatever read_size."""
        while (skipped := _value_end(self.buf, self.pos)) is None and not self.eof:
            if len(self.buf) - self.pos > MAX_ELEMENT:
                raise self._broken(f"element larger than {MAX_ELEMENT} characters") from None
            wanted = 2 * (len(self.buf) - self.pos)
            while len(self.buf) - self.pos < wanted and self._more():
                pass
        if skipped is None:
            raise self._broken(unparsable(exc)) from None
        return skipped

    def _take(self, lineno: int, obj: Any, start: int, end: int, unbuilt: str | None) -> None:
        read = self.read
        read.stats.records += 1
        if unbuilt is not None:
            read.bad(lineno, unbuilt)
        elif read.dirty and read.undecodable(self.buf, start, end):
            read.bad(lineno, read.bad_bytes())
        elif type(obj) is dict and (
            type(s := obj.get(read.src.source_field, MISSING)) in SCALARS
            and type(t := obj.get(read.src.target_field, MISSING)) in SCALARS
        ):
            self.facts.append((s, t, lineno))
        elif not isinstance(obj, dict):
            read.bad(lineno, f"element is {type(obj).__name__}, not an object")
        else:
            read.bad_fact(obj, lineno)

    # -- the buffer -------------------------------------------------------------------

    def _more(self) -> bool:
        for text in self.texts:
            if self.pos > len(self.buf) // 2:  # drop the consumed prefix, keep line count
                self.line_at(self.pos)
                self.buf, self.line_pos, self.pos = self.buf[self.pos :], 0, 0
            self.buf += text
            return True
        self.eof = True
        return False

    def _skip_ws(self) -> bool:
        """Advance pos to the next non-blank char; False at end of input."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in WS:
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return True
            if not self._more():
                return False

    def line_at(self, p: int) -> int:
        self.line += self.buf.count("\n", self.line_pos, p)
        self.line_pos = p
        return self.line

    def _broken(self, what: str) -> SourceError:
        read = self.read
        if self.pos < len(self.buf) and read.undecodable(self.buf[self.pos]):
            what = read.bad_bytes()
        return SourceError(
            f"{read.path}:{self.line_at(self.pos)}: broken JSON array: {what}"
            f" ({read.stats.records} elements before it were read)"
        )
