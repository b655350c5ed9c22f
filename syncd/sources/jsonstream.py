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
    """Stream the elements of one top-level JSON array.

    ``buf[pos:]`` is unparsed text; ``line`` is the line number at ``line_pos``.
    An element is accepted only if it ends before the buffer does (or at EOF), so a
    value cut by a block boundary (``12|34``) is never taken for a shorter one. A
    decode error near the buffer's end means "read more"; elsewhere it means broken.
    """
    raw_decode = DECODER.raw_decode
    sf, tf, scalars = read.src.source_field, read.src.target_field, SCALARS
    buf, pos, eof = "", 0, False
    line, line_pos = 1, 0
    facts: list[RawFact] = []

    def more() -> bool:
        nonlocal buf, pos, line_pos, eof
        for text in texts:
            if pos > len(buf) // 2:  # drop the consumed prefix, keep line bookkeeping
                line_at(pos)
                buf, line_pos, pos = buf[pos:], 0, 0
            buf += text
            return True
        eof = True
        return False

    def skip_ws() -> bool:
        """Advance pos to the next non-blank char; False at end of input."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in WS:
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    def line_at(p: int) -> int:
        nonlocal line, line_pos
        line += buf.count("\n", line_pos, p)
        line_pos = p
        return line

    def broken(what: str) -> SourceError:
        if pos < len(buf) and read.undecodable(buf[pos]):
            what = read.bad_bytes()
        return SourceError(
            f"{read.path}:{line_at(pos)}: broken JSON array: {what}"
            f" ({read.stats.records} elements before it were read)"
        )

    if not skip_ws():
        raise broken("empty file, expected a JSON array")
    if buf[pos] != "[":
        hint = " (one object per line? use format 'jsonl')" if buf[pos] == "{" else ""
        raise broken(f"the file does not start with '['{hint}")
    pos += 1
    if not skip_ws():
        raise broken("unexpected end of file, ']' missing")
    if buf[pos] == "]":
        pos += 1
    else:
        while True:
            start = pos
            unbuilt: str | None = None
            try:
                obj, end = raw_decode(buf, pos)
                if end == len(buf) and not eof:
                    raise json.JSONDecodeError("value may continue", buf, end)
            except json.JSONDecodeError as exc:
                incomplete = exc.msg.startswith("Unterminated string") or (exc.pos >= len(buf) - 16)
                if not eof and incomplete:
                    if len(buf) - start > MAX_ELEMENT:
                        raise broken(f"element larger than {MAX_ELEMENT} characters") from None
                    more()  # pos is still the element's start; more() may move both
                    continue
                pos = exc.pos
                raise broken(exc.msg) from None
            except (ValueError, RecursionError) as exc:
                # Valid JSON that Python will not build (nested too deep, an integer
                # of thousands of digits): skip the element by scanning for its end.
                # The buffer at least doubles between scans: linear, whatever read_size.
                while (skipped := _value_end(buf, pos)) is None and not eof:
                    if len(buf) - pos > MAX_ELEMENT:
                        raise broken(f"element larger than {MAX_ELEMENT} characters") from None
                    wanted = 2 * (len(buf) - pos)
                    while len(buf) - pos < wanted and more():
                        pass
                if skipped is None:
                    raise broken(unparsable(exc)) from None
                start = pos  # more() may have moved the buffer
                obj, end, unbuilt = None, skipped, unparsable(exc)
            lineno = line_at(start)
            read.stats.records += 1
            if unbuilt is not None:
                read.bad(lineno, unbuilt)
            elif read.dirty and read.undecodable(buf, start, end):
                read.bad(lineno, read.bad_bytes())
            elif type(obj) is dict and (
                type(s := obj.get(sf, MISSING)) in scalars
                and type(t := obj.get(tf, MISSING)) in scalars
            ):
                facts.append((s, t, lineno))
                if len(facts) >= CHUNK_SIZE:
                    yield facts
                    facts = []
            elif not isinstance(obj, dict):
                read.bad(lineno, f"element is {type(obj).__name__}, not an object")
            else:
                read.bad_fact(obj, lineno)
            pos = end
            if not skip_ws():
                raise broken("unexpected end of file, ']' missing")
            if buf[pos] == "]":
                pos += 1
                break
            if buf[pos] != ",":
                raise broken(f"expected ',' or ']', found {buf[pos]!r}")
            pos += 1
            if not skip_ws():
                raise broken("unexpected end of file after ','")
            if buf[pos] == "]":
                raise broken("trailing ',' before ']'")
    if facts:
        yield facts
    if skip_ws():
        raise broken("data after the closing ']'")
