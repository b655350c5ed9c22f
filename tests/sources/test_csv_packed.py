"""The file source's packed path (id_facts) gives exactly what the record path gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncd.core.pairs import pack
from syncd.engine.desired import Desired, read_ids
from syncd.sources import csvfile
from syncd.sources.base import PackedFacts, RawFact, ReadStats
from syncd.sources.csvfile import id_columns
from syncd.sources.file import FileSource


class RecordsOnly:
    """The same file source without its packed path: the reference."""

    def __init__(self, inner: FileSource) -> None:
        self.inner = inner
        self.label = inner.label

    def origin(self, record: int) -> str:
        return self.inner.origin(record)

    def facts(self) -> AsyncIterator[list[RawFact]]:
        return self.inner.facts()

    @property
    def stats(self) -> ReadStats:
        return self.inner.stats


async def both(path: Path, read_size: int) -> tuple[Any, Any]:
    """(packed read, record read): the desired state, the stats and the bad_record lines."""
    out = []
    for source in (FileSource(path, read_size=read_size), None):
        src = source or RecordsOnly(FileSource(path, read_size=read_size))
        with capture_logs() as logs:
            desired: Desired = await read_ids(src)  # type: ignore[arg-type]
        # Sorted: the source's own bad lines and the engine's may interleave differently.
        bad = sorted((e["origin"], e["reason"]) for e in logs if e["event"] == "bad_record")
        stats = (src.stats.records, src.stats.bad, src.stats.blank)
        out.append((desired.pairs, desired.bad_records, stats, bad))
    return out[0], out[1]


def test_id_columns_accepts_only_plain_blocks() -> None:
    assert id_columns("1,2\n3,4", 2, 0, 1) == [pack(1, 2), pack(3, 4)]
    assert id_columns("1,2\r\n3,4\r", 2, 0, 1) == [pack(1, 2), pack(3, 4)]
    assert id_columns("9,1,2\n9,3,4", 3, 2, 1) == [pack(2, 1), pack(4, 3)]
    assert id_columns("007,2", 2, 0, 1) == [pack(7, 2)]
    for bad in (
        "1,2\r3,4",  # a lone CR: a line break to csv
        "1,2,3\n4",  # enough commas in all, one line short
        "1,2\n\n3,4",  # a blank line
        "1,,2\n3",
        "1, 2",
        '1,"2"',
        "1,\u0662",  # an Arabic-Indic digit: isdigit, not ASCII
        "1,9223372036854775808",  # MAX_ID + 1
        "1," + "9" * 5000,  # longer than int() converts
    ):
        assert id_columns(bad, 2, 0, 1) is None, bad
    assert id_columns("1", 1, 0, 0) is None


async def test_packed_blocks_then_a_bad_line_keeps_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvfile, "PIECE", 64)
    rows = [f"{i},{i + 1000}" for i in range(1, 200)]
    rows[150] = "151,x"
    rows[170] = ""
    path = tmp_path / "t.csv"
    path.write_text("bk_inst_id,bk_asst_inst_id\n" + "\n".join(rows) + "\n")
    packed, records = await both(path, read_size=100)
    assert packed == records
    pairs, bad_count, stats, bad = packed
    assert len(pairs) == 197 and bad_count == 1 and stats == (198, 0, 1)
    assert bad == [(f"{path}:152", "'x' is not an integer id")]


async def test_packed_path_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("bk_inst_id,bk_asst_inst_id\n1,2\n3,4\n")
    chunks = [c async for c in FileSource(path).id_facts()]
    assert chunks == [PackedFacts([pack(1, 2), pack(3, 4)])]


_LINE = st.one_of(
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(lambda t: f"{t[0]},{t[1]}"),
    st.sampled_from(
        ["", " ", "1", "1,2,3", '"4","5"', '"6\n7",8', "9 ,10", "x,1", "1,", "12,3\r", '"', "\r"]
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_LINE, max_size=40), read_size=st.integers(1, 64), piece=st.integers(1, 40))
async def test_packed_equals_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], read_size: int, piece: int
) -> None:
    monkeypatch.setattr(csvfile, "PIECE", piece)
    path = tmp_path / "h.csv"
    path.write_text("bk_inst_id,bk_asst_inst_id\n" + "\n".join(lines), newline="")
    packed, records = await both(path, read_size)
    assert packed == records
