"""The command source: run an argv (never a shell), parse its stdout into facts.

Formats: a JSON document (a list, or ``records`` path to one), JSON Lines, CSV with a
header row, or lldpd's ``lldpcli -f json show neighbors``. The whole run is bounded by
``timeout``: past it the process group is killed (a wrapper script's children too).
A failed run (non-zero exit, timeout, too much output, unparseable output) raises
SourceError naming the command (argv[0] only: arguments and the environment may hold
secrets) with the tail of its stderr, secrets redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import structlog

from syncd.sources.base import RawFact, ReadStats, SourceError, chunked, redact
from syncd.sources.childio import exited, finish, read_tail
from syncd.sources.lldpd import LldpdFormatError, neighbor_key, orient, parse_neighbors
from syncd.sources.paths import PathMissing, compile_path, get_path, scalar
from syncd.sources.settings import CommandSourceSettings
from syncd.support.log import BadRecords

log = structlog.get_logger("syncd.sources")

STDERR_TAIL = 2000


class CommandSource:
    """Facts from one run of a command; record numbers are lines (jsonl, csv) or indexes."""

    def __init__(self, settings: CommandSourceSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self.program = os.path.basename(settings.argv[0])
        self.label = f"command:{self.program}"
        self._stats = ReadStats()
        self._bad_records = BadRecords(self.label)

    @property
    def stats(self) -> ReadStats:
        return self._stats

    def origin(self, record: int) -> str:
        unit = "line" if self.settings.format in ("jsonl", "csv") else "record"
        return f"{self.label} stdout {unit} {record}"

    def _fail(self, why: str, stderr: bytes = b"") -> SourceError:
        secrets = [v.get_secret_value() for v in self.settings.env.values()]
        tail = stderr[-STDERR_TAIL:].decode("utf-8", "replace").strip()
        msg = f"command source {self.label} (relation {self.name!r}): {why}"
        if tail:
            msg += f"; stderr: {tail}"
        return SourceError(redact(msg, secrets))

    async def run(self) -> bytes:
        """Run the command to completion; its stdout, or SourceError.

        Judged by its exit, not by its pipe: a helper it leaves behind may hold stdout
        open; once the command has exited, what it wrote is read until the pipe is
        quiet, then the group (the helper too) is ended."""
        s = self.settings
        env = dict(os.environ) if s.inherit_env else {}
        env.update({k: v.get_secret_value() for k, v in s.env.items()})
        try:
            proc = await asyncio.create_subprocess_exec(
                *s.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=s.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise self._fail(f"could not start: {exc.strerror or type(exc).__name__}") from None
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.ensure_future(read_tail(proc.stderr, STDERR_TAIL))
        out = _Output(s.max_output)
        reader = asyncio.ensure_future(out.collect(proc.stdout))
        try:
            async with asyncio.timeout(s.timeout):
                code = await _exit_and_output(proc, reader, out)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            err = await finish(stderr_task)
            raise self._fail(f"timed out after {s.timeout:g}s and was killed", err) from None
        finally:
            reader.cancel()
            if proc.returncode is None:  # cancelled or too much: leave no process behind
                _kill(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
            else:  # a helper still holding the pipe goes with the command
                _kill(proc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PIPE_QUIET):
                        await proc.wait()  # the pipes close: the transport is done
            if not stderr_task.done():
                stderr_task.cancel()
        if out.over:
            raise self._fail(
                f"wrote more than max_output={s.max_output} bytes", await finish(stderr_task)
            )
        err = await finish(stderr_task)
        if code != 0:
            why = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise self._fail(why, err)
        return out.data()

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        self._stats = ReadStats()
        self._bad_records = BadRecords(self.label)
        out = await self.run()
        fmt = self.settings.format
        if fmt == "json":
            facts = self._json(out)
        elif fmt == "jsonl":
            facts = self._jsonl(out)
        elif fmt == "csv":
            facts = self._csv(out)
        else:
            facts = self._lldpd(out)
        self._bad_records.finish()
        for part in chunked(facts):
            yield part

    # -- formats -------------------------------------------------------------------------

    def _bad(self, record: int, reason: str) -> None:
        self._stats.bad += 1
        self._bad_records.add(self.origin(record), reason)

    def _pick(self, item: Any, record: int, facts: list[RawFact]) -> None:
        s = self.settings
        self._stats.records += 1
        try:
            facts.append(
                (
                    scalar(get_path(item, compile_path(s.source_field))),
                    scalar(get_path(item, compile_path(s.target_field))),
                    record,
                )
            )
        except PathMissing as exc:
            self._bad(record, f"no {exc} in the record")
        except TypeError as exc:
            self._bad(record, str(exc))

    def _json(self, out: bytes) -> list[RawFact]:
        try:
            doc = json.loads(out)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise self._fail(f"printed no valid JSON: {_why(exc)}") from None
        if self.settings.records is not None:
            try:
                doc = get_path(doc, compile_path(self.settings.records))
            except PathMissing as exc:
                raise self._fail(f"printed JSON without {exc} (records path)") from None
        elif isinstance(doc, dict) and isinstance(doc.get("results"), list):
            doc = doc["results"]
        if not isinstance(doc, list):
            raise self._fail(f"printed a JSON {type(doc).__name__}, not a list of records")
        facts: list[RawFact] = []
        for index, item in enumerate(doc):
            self._pick(item, index, facts)
        return facts

    def _jsonl(self, out: bytes) -> list[RawFact]:
        facts: list[RawFact] = []
        for number, line in enumerate(out.splitlines(), start=1):
            if not line.strip():
                self._stats.blank += 1
                continue
            try:
                item = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                self._stats.records += 1
                self._bad(number, f"not JSON: {_why(exc)}")
                continue
            self._pick(item, number, facts)
        if self._stats.records and self._stats.bad == self._stats.records:
            raise self._fail("printed no valid JSON line")
        return facts

    def _csv(self, out: bytes) -> list[RawFact]:
        s = self.settings
        try:
            text = out.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise self._fail(f"printed invalid UTF-8: {exc}") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        missing = [c for c in (s.source_field, s.target_field) if c not in header]
        if missing:
            raise self._fail(f"printed CSV without the column(s) {', '.join(missing)}")
        src, dst = header.index(s.source_field), header.index(s.target_field)
        facts: list[RawFact] = []
        for row in reader:
            number = reader.line_num
            if not row or all(not c.strip() for c in row):
                self._stats.blank += 1
                continue
            self._stats.records += 1
            if len(row) != len(header):
                self._bad(number, f"{len(row)} fields, the header has {len(header)}")
                continue
            facts.append((row[src].strip(), row[dst].strip(), number))
        return facts

    def _lldpd(self, out: bytes) -> list[RawFact]:
        s = self.settings
        try:
            doc = json.loads(out)
            neighbors = list(parse_neighbors(doc))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            kind = "lldpd" if isinstance(exc, LldpdFormatError) else "valid JSON"
            raise self._fail(f"printed no {kind} output: {_why(exc)}") from None
        local = s.local_name or socket.gethostname()
        facts: list[RawFact] = []
        seen: set[str] = set()
        for index, neighbor in enumerate(neighbors):
            self._stats.records += 1
            key = neighbor_key(neighbor, s.neighbor_key)
            if key is None:
                self._bad(
                    index,
                    f"the neighbour on {neighbor.local_port} announced no {s.neighbor_key}",
                )
                continue
            if key in seen:  # two ports to the same switch: one relation
                continue
            seen.add(key)
            facts.append((*orient(local, key, s.local_side), index))
        return facts


def _why(exc: BaseException) -> str:
    """A decoding failure in one line (a RecursionError's own text says nothing useful)."""
    return "JSON nested too deep" if isinstance(exc, RecursionError) else str(exc)[:300]


PIPE_QUIET = 0.5
"""Once the command exited, its stdout is read until it stays quiet this long."""


class _Output:
    """A command's stdout as it is read, up to ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.over = False

    async def collect(self, stream: asyncio.StreamReader) -> None:
        """Read to the end, or stop once past the limit (``over``)."""
        while chunk := await stream.read(65536):
            self.size += len(chunk)
            if self.size > self.limit:
                self.over = True
                return
            self.parts.append(chunk)

    def data(self) -> bytes:
        return b"".join(self.parts)


async def _exit_and_output(
    proc: asyncio.subprocess.Process, reader: asyncio.Future[None], out: _Output
) -> int:
    """The exit status once the command exited and its output is in (or too much)."""
    waiter = asyncio.ensure_future(exited(proc))
    try:
        either: set[asyncio.Future[object]] = {reader, waiter}  # type: ignore[arg-type]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if out.over:
            _kill(proc)
            return await waiter
        if not reader.done():  # exited; the pipe is still open (a helper holds it)
            size = -1
            while not reader.done() and size != out.size:
                size = out.size
                await asyncio.wait({reader}, timeout=PIPE_QUIET)
        return await waiter
    finally:
        waiter.cancel()


def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the whole process group the child leads (start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
