"""Hostile source input: deep nesting, huge integers, look-alike ids, files that move under
the reader, and files that are not files. Each must cost one bad record (or fail the
relation's read), never the daemon, and never produce a pair that was not in the source."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from src_helpers import read_all
from structlog.testing import capture_logs

from syncd.engine.desired import BadValue, to_id
from syncd.sources.base import RawFact, SourceError
from syncd.sources.command import CommandSource
from syncd.sources.file import FileSource
from syncd.sources.settings import CommandSourceSettings, HttpSourceSettings

DEEP = "[" * 50_000 + "]" * 50_000
HUGE = "9" * 5000


async def read_logged(src: Any) -> tuple[list[RawFact], list[MutableMapping[str, Any]]]:
    with capture_logs() as logs:
        facts = await read_all(src)
    return facts, [e for e in logs if e["event"] == "bad_record"]


# -- JSON that Python will not build ----------------------------------------------------


@pytest.mark.parametrize("bad", [DEEP, HUGE, '{"a": ' + DEEP + "}"], ids=["deep", "huge", "inner"])
async def test_jsonl_line_nested_deep_or_huge_is_one_bad_record(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"bk_inst_id": 1, "bk_asst_inst_id": 1001}\n'
        f'{{"bk_inst_id": {bad}, "bk_asst_inst_id": 1002}}\n'
        '{"bk_inst_id": 3, "bk_asst_inst_id": 1003}\n'
    )
    src = FileSource(path)
    facts, bad_lines = await read_logged(src)
    assert [f[:2] for f in facts] == [(1, 1001), (3, 1003)]
    assert [b["origin"] for b in bad_lines] == [f"{path}:2"]
    assert src.stats.bad == 1 and src.stats.records == 3


@pytest.mark.parametrize("read_size", [7, 4096, 1 << 20])
@pytest.mark.parametrize("bad", [DEEP, HUGE], ids=["deep", "huge"])
async def test_json_array_element_nested_deep_or_huge_is_one_bad_record(
    tmp_path: Path, bad: str, read_size: int
) -> None:
    path = tmp_path / "t.json"
    path.write_text(
        '[{"bk_inst_id": 1, "bk_asst_inst_id": 1001},\n'
        f' {{"bk_inst_id": {bad}, "x": "]}}\\"", "bk_asst_inst_id": 1002}},\n'
        f" {bad},\n"
        ' {"bk_inst_id": 3, "bk_asst_inst_id": 1003}]\n'
    )
    src = FileSource(path, read_size=read_size)
    facts, bad_lines = await read_logged(src)
    assert [f[:2] for f in facts] == [(1, 1001), (3, 1003)]
    assert [b["origin"] for b in bad_lines] == [f"{path}:2", f"{path}:3"]
    assert src.stats.records == 4


def command(code: str, **kw: Any) -> CommandSource:
    settings = CommandSourceSettings.model_validate(
        {"type": "command", "argv": [sys.executable, "-c", code], **kw}
    )
    return CommandSource(settings, name="rel")


@pytest.mark.parametrize("fmt", ["json", "lldpd"])
async def test_command_document_nested_deep_fails_the_read(fmt: str) -> None:
    src = command(f"import sys; sys.stdout.write({DEEP!r})", format=fmt)
    with pytest.raises(SourceError, match="nested too deep"):
        await read_all(src)


async def test_command_jsonl_line_nested_deep_is_one_bad_record() -> None:
    lines = '{"bk_inst_id": 1, "bk_asst_inst_id": 1001}\n' + DEEP + "\n"
    src = command(f"import sys; sys.stdout.write({lines!r})", format="jsonl")
    facts, bad_lines = await read_logged(src)
    assert [f[:2] for f in facts] == [(1, 1001)]
    assert len(bad_lines) == 1 and "nested too deep" in bad_lines[0]["reason"]


# -- ids are ASCII digits -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["1_000", "\uff11\uff12", "+5", " 7 ", "-1", "١٢", "7\n", ""])
def test_only_ascii_digits_are_ids(value: str) -> None:
    with pytest.raises(BadValue):
        to_id(value)


def test_plain_digits_are_ids_and_a_huge_one_is_out_of_range() -> None:
    assert to_id("0") == 0 and to_id("1000") == 1000 and to_id(42) == 42
    with pytest.raises(BadValue, match="out of range"):
        to_id(HUGE)


# -- CSV ----------------------------------------------------------------------------------


async def test_a_newline_inside_a_quoted_csv_field_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('bk_inst_id,bk_asst_inst_id\n"1\n2",1001\n3,1003\n')
    facts = await read_all(FileSource(path))
    assert facts == [("1\n2", "1001", 2), ("3", "1003", 4)]
    with pytest.raises(BadValue):
        to_id(facts[0][0])


# -- files that change under the reader ------------------------------------------------------


def big_csv(path: Path, n: int = 30_000) -> None:
    path.write_text("bk_inst_id,bk_asst_inst_id\n" + "".join(f"{i},{i}\n" for i in range(n)))


async def read_with(path: Path, change: Any) -> list[RawFact]:
    """Read, and change the file once after the first chunk arrived."""
    out: list[RawFact] = []
    changed = False
    async for chunk in FileSource(path, read_size=4096).facts():
        out.extend(chunk)
        if not changed:
            change(path)
            changed = True
    return out


def append(path: Path) -> None:
    with path.open("a") as fh:
        fh.write("9,9\n")


def shrink(path: Path) -> None:
    with path.open("r+") as fh:
        fh.truncate(path.stat().st_size // 2 + 3)  # the last line is cut short


def replace(path: Path) -> None:
    tmp = path.with_suffix(".new")
    big_csv(tmp, 10)
    os.replace(tmp, path)


def rewrite_same_size(path: Path) -> None:
    data = path.read_bytes()
    os.utime(path, ns=(1, 1))
    path.write_bytes(data[:-5] + b"7,7\n\n")


@pytest.mark.parametrize("change", [append, shrink, replace, rewrite_same_size])
async def test_a_file_changed_while_read_fails_the_read(tmp_path: Path, change: Any) -> None:
    path = tmp_path / "t.csv"
    big_csv(path)
    with pytest.raises(SourceError, match="changed while it was being read"):
        await read_with(path, change)


# -- not regular files ------------------------------------------------------------------------


async def test_a_fifo_source_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)
    async with asyncio.timeout(10):
        with pytest.raises(SourceError, match="is a FIFO, not a regular file"):
            await read_all(FileSource(fifo))


@pytest.mark.parametrize("path", ["/dev/zero", "/tmp"])
async def test_a_device_or_directory_source_is_refused(path: str) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(SourceError, match="not a regular file"):
            await read_all(FileSource(Path(path), format="csv"))


def test_a_fifo_or_device_token_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        settings = HttpSourceSettings.model_validate(
            {"type": "http", "url": "http://127.0.0.1:1", "token_file": str(path)}
        )
        with pytest.raises(SourceError, match="not a regular file"):
            settings.read_token()


def test_a_huge_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 100_000)
    settings = HttpSourceSettings.model_validate(
        {"type": "http", "url": "http://127.0.0.1:1", "token_file": str(path)}
    )
    with pytest.raises(SourceError, match="larger than 65536 bytes"):
        settings.read_token()
