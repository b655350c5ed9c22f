"""The file source: three formats, auto detection, bad records, streaming and chunking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.sources.base import CHUNK_SIZE, RawFact, Source, SourceError
from syncd.sources.file import FileFormat, FileSource


async def read(src: FileSource) -> list[RawFact]:
    out: list[RawFact] = []
    async for chunk in src.facts():
        assert 0 < len(chunk) <= CHUNK_SIZE
        out.extend(chunk)
    return out


async def read_logged(src: FileSource) -> tuple[list[RawFact], list[MutableMapping[str, Any]]]:
    with capture_logs() as logs:
        facts = await read(src)
    return facts, [e for e in logs if e["event"] == "bad_record"]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def test_is_a_source(tmp_path: Path) -> None:
    src: Source = FileSource(tmp_path / "t.csv")
    assert src.label == f"file:{tmp_path / 't.csv'}"
    assert src.origin(12) == f"{tmp_path / 't.csv'}:12"


async def test_csv(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.csv",
        "name, bk_asst_inst_id ,bk_inst_id\r\n"
        'sw1, 20 ,1\r\n"sw, ""2""",21,2\r\n'
        '"multi\nline",22,3\r\nsw4,23,4\r\n',
    )
    src = FileSource(p)
    assert await read(src) == [("1", "20", 2), ("2", "21", 3), ("3", "22", 4), ("4", "23", 6)]
    assert (src.stats.records, src.stats.bad, src.stats.blank) == (4, 0, 0)


async def test_csv_custom_fields_and_bom(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "\ufeffsrc,dst\n1,2\n3,4")  # BOM, no final newline
    src = FileSource(p, source_field="src", target_field="dst")
    assert await read(src) == [("1", "2", 2), ("3", "4", 3)]


async def test_jsonl(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.jsonl",
        '{"bk_inst_id": 1, "bk_asst_inst_id": 10, "x": [1]}\n'
        '  {"bk_inst_id": "2", "bk_asst_inst_id": 2.5}  \r\n'
        '{"bk_inst_id": true, "bk_asst_inst_id": null}\n',
    )
    src = FileSource(p)
    assert await read(src) == [(1, 10, 1), ("2", 2.5, 2), (True, None, 3)]
    assert src.stats.records == 3


async def test_json_array(tmp_path: Path) -> None:
    rows = [{"bk_inst_id": i, "bk_asst_inst_id": i + 100, "n": "é" * i} for i in range(5)]
    p = write(tmp_path, "t.json", json.dumps(rows, indent=2, ensure_ascii=False))
    src = FileSource(p)
    facts = await read(src)
    assert [f[:2] for f in facts] == [(i, i + 100) for i in range(5)]
    assert [f[2] for f in facts] == [2, 7, 12, 17, 22]  # the line each element starts on
    assert src.stats.records == 5


@pytest.mark.parametrize("content", ["[]", "  [ ]  \n", "\n[\n]\n"])
async def test_json_array_empty(tmp_path: Path, content: str) -> None:
    assert await read(FileSource(write(tmp_path, "t.json", content))) == []


@pytest.mark.parametrize("read_size", [1, 2, 3, 5, 7, 64])
async def test_json_array_elements_split_across_reads(tmp_path: Path, read_size: int) -> None:
    """Every element (and number, string, escape, multi-byte char) is cut somewhere."""
    rows: list[Any] = [
        {"bk_inst_id": 123456789, "bk_asst_inst_id": 987654321},
        {"bk_asst_inst_id": "\\u00e9\u4e2d", "bk_inst_id": 1.5e3, "tag": 'a\\"b\u00e9'},
        {"bk_inst_id": -12, "bk_asst_inst_id": 34, "nested": {"k": [1, 2, {"z": None}]}},
        {"bk_inst_id": True, "bk_asst_inst_id": False},
    ]
    text = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"
    src = FileSource(write(tmp_path, "t.json", text), read_size=read_size)
    facts = await read(src)
    assert facts == [
        (123456789, 987654321, 2),
        (1500.0, "\\u00e9\u4e2d", 3),
        (-12, 34, 4),
        (True, False, 5),
    ]


async def test_minified_json_array_streams(tmp_path: Path) -> None:
    """One long line: lines never bound the buffer, so the file must not be read whole."""
    n = 30_000
    text = json.dumps([{"bk_inst_id": i, "bk_asst_inst_id": i} for i in range(n)])
    src = FileSource(write(tmp_path, "t.json", text), read_size=4096)
    sizes: list[int] = []
    seen = 0
    async for chunk in src.facts():
        sizes.append(len(chunk))
        seen += len(chunk)
    assert seen == n and sizes == [CHUNK_SIZE] * 3


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.csv", '{"bk_inst_id": 1}\n', "csv"),  # extension wins over content
        ("t.CSV", "bk_inst_id,bk_asst_inst_id\n1,2\n", "csv"),
        ("t.jsonl", '{"bk_inst_id": 1, "bk_asst_inst_id": 2}\n', "jsonl"),
        ("t.ndjson", '{"bk_inst_id": 1, "bk_asst_inst_id": 2}\n', "jsonl"),
        ("t.json", '[{"bk_inst_id": 1, "bk_asst_inst_id": 2}]', "json"),
        ("topology", '\n\n  [{"bk_inst_id": 1, "bk_asst_inst_id": 2}]', "json"),
        ("topology.txt", '\n {"bk_inst_id": 1, "bk_asst_inst_id": 2}\n', "jsonl"),
        ("topology.dat", "\nbk_inst_id,bk_asst_inst_id\n1,2\n", "csv"),
    ],
)
async def test_auto_detection(tmp_path: Path, name: str, content: str, expected: str) -> None:
    p = write(tmp_path, name, content)
    explicit: FileFormat = expected  # type: ignore[assignment]
    if name == "t.csv":  # content is JSON but the extension says CSV: header is missing
        with pytest.raises(SourceError, match="no column"):
            await read(FileSource(p))
        return
    auto = await read(FileSource(p))
    assert auto == await read(FileSource(p, format=explicit))
    assert [f[:2] for f in auto] in ([("1", "2")], [(1, 2)])


async def test_auto_on_blank_file_yields_nothing(tmp_path: Path) -> None:
    src = FileSource(write(tmp_path, "topology", "\n \n"))
    assert await read(src) == []
    assert src.stats.blank == 2


async def test_csv_bad_records(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "topology.csv",
        "bk_inst_id,bk_asst_inst_id,note\n"
        "1,10,ok\n"  # line 2
        "\n"  # 3: blank
        "2,20\n"  # 4: too few
        "3,30,x,extra\n"  # 5: too many
        "   \n"  # 6: blank (whitespace only)
        ",40,empty source\n"  # 7
        "5, ,empty target\n"  # 8
        "6,60,ok\n",  # 9
    )
    src = FileSource(p)
    facts, bad = await read_logged(src)
    assert facts == [("1", "10", 2), ("6", "60", 9)]
    assert [(e["origin"], e["reason"]) for e in bad] == [
        (f"{p}:4", "2 fields, header has 3"),
        (f"{p}:5", "4 fields, header has 3"),
        (f"{p}:7", "empty bk_inst_id"),
        (f"{p}:8", "empty bk_asst_inst_id"),
    ]
    assert all(e["source"] == f"file:{p}" and e["log_level"] == "warning" for e in bad)
    assert (src.stats.records, src.stats.bad, src.stats.blank) == (6, 4, 2)


async def test_jsonl_bad_records(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.jsonl",
        '{"bk_inst_id": 1, "bk_asst_inst_id": 10}\n'  # 1
        '{"bk_inst_id": 2, "bk_asst_inst_id": \n'  # 2: broken
        "\n"  # 3: blank
        "[1, 2]\n"  # 4: not an object
        '{"bk_inst_id": 4}\n'  # 5: missing target
        '{"bk_inst_id": 5, "bk_asst_inst_id": 50} trailing\n'  # 6: extra data
        '{"bk_inst_id": {"id": 6}, "bk_asst_inst_id": 60}\n'  # 7: not a scalar
        '{"bk_inst_id": 7, "bk_asst_inst_id": 70}',  # 8: no final newline
    )
    src = FileSource(p)
    facts, bad = await read_logged(src)
    assert facts == [(1, 10, 1), (7, 70, 8)]
    origins = [(e["origin"].rsplit(":", 1)[1], e["reason"]) for e in bad]
    assert [o for o, _ in origins] == ["2", "4", "5", "6", "7"]
    reasons = [r for _, r in origins]
    assert reasons[0].startswith("broken JSON")
    assert reasons[1] == "record is list, not an object"
    assert reasons[2] == "missing bk_asst_inst_id"
    assert reasons[3].startswith("broken JSON: extra data")
    assert reasons[4] == "bk_inst_id is dict, not a scalar"
    assert (src.stats.records, src.stats.bad, src.stats.blank) == (7, 5, 1)


async def test_json_array_bad_elements(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.json",
        '[\n  {"bk_inst_id": 1, "bk_asst_inst_id": 10},\n'  # element on line 2
        "  42,\n"  # 3: not an object
        '  {"bk_asst_inst_id": 30},\n'  # 4: missing source
        '  {\n    "bk_inst_id": 4,\n    "bk_asst_inst_id": 40\n  }\n]\n',  # starts on line 5
    )
    src = FileSource(p)
    facts, bad = await read_logged(src)
    assert facts == [(1, 10, 2), (4, 40, 5)]
    assert [(e["origin"], e["reason"]) for e in bad] == [
        (f"{p}:3", "element is int, not an object"),
        (f"{p}:4", "missing bk_inst_id"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"bk_inst_id": 1, "bk_asst_inst_id": 2},\n {"bk_inst_id": 3,, }]', r":2: broken"),
        ('[{"bk_inst_id": 1, "bk_asst_inst_id": 2}', "']' missing"),
        ('[{"bk_inst_id": 1, "bk_asst_inst_id": 2},]', "trailing ','"),
        ('[{"bk_inst_id": 1, "bk_asst_inst_id": 2} {"a": 1}]', "expected ',' or ']'"),
        ('[{"bk_inst_id": 1, "bk_asst_inst_id": 2}] [', "data after the closing"),
        ('{"bk_inst_id": 1, "bk_asst_inst_id": 2}', "use format 'jsonl'"),
        ("", "empty file"),
        ('[{"bk_inst_id": "never closed', "broken JSON array"),
    ],
)
async def test_json_array_structurally_broken(tmp_path: Path, content: str, message: str) -> None:
    p = write(tmp_path, "t.json", content)
    for read_size in (3, 1 << 16):
        with pytest.raises(SourceError, match=message) as err:
            await read(FileSource(p, read_size=read_size))
        assert str(p) in str(err.value)


async def test_broken_array_after_full_chunks(tmp_path: Path) -> None:
    """Chunks before the break are yielded, then the read fails as a whole."""
    body = ",\n".join(f'{{"bk_inst_id": {i}, "bk_asst_inst_id": 1}}' for i in range(CHUNK_SIZE))
    p = write(tmp_path, "t.json", "[\n" + body + ",\n oops]\n")
    got: list[int] = []
    with pytest.raises(SourceError, match=rf"t.json:{CHUNK_SIZE + 2}: broken JSON array"):
        async for chunk in FileSource(p).facts():
            got.append(len(chunk))
    assert got == [CHUNK_SIZE]


async def test_wrong_encoding_skips_only_bad_lines(tmp_path: Path) -> None:
    gbk = "交换机".encode("gbk")
    data = (
        b"bk_inst_id,bk_asst_inst_id,name\n"
        b"1,10,ok\n"
        b"2,20," + gbk + b"\n"  # 3: GBK bytes in a UTF-8 file
        b"3,30,\xe4\xb8\xad\n"  # 4: valid UTF-8
        b"4,\xff40,x\n"  # 5: bad byte in a key field
        b"5,50,ok\n"
    )
    p = write(tmp_path, "t.csv", data)
    for read_size in (1, 4, 1 << 16):  # a bad or multi-byte sequence cut by a read boundary
        src = FileSource(p, read_size=read_size)
        facts, bad = await read_logged(src)
        assert facts == [("1", "10", 2), ("3", "30", 4), ("5", "50", 6)]
        assert [(e["origin"], e["reason"]) for e in bad] == [
            (f"{p}:3", "invalid bytes for encoding utf-8"),
            (f"{p}:5", "invalid bytes for encoding utf-8"),
        ]
    # read as GB18030: line 3 is fine now, the UTF-8 of line 4 ends in an invalid GB byte
    src = FileSource(p, encoding="gb18030")
    facts, bad = await read_logged(src)
    assert [f[2] for f in facts] == [2, 3, 6]
    assert [e["origin"] for e in bad] == [f"{p}:4", f"{p}:5"]


async def test_wrong_encoding_jsonl_and_json(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.jsonl",
        b'{"bk_inst_id": 1, "bk_asst_inst_id": 10}\n'
        b'{"bk_inst_id": 2, "bk_asst_inst_id": 20, "n": "\xff"}\n'
        b'{"bk_inst_id": 3, "bk_asst_inst_id": 30}\n',
    )
    facts, bad = await read_logged(FileSource(p))
    assert [f[2] for f in facts] == [1, 3]
    assert [e["origin"] for e in bad] == [f"{p}:2"]
    p = write(
        tmp_path,
        "t.json",
        b'[{"bk_inst_id": 1, "bk_asst_inst_id": 10},\n'
        b' {"bk_inst_id": 2, "bk_asst_inst_id": 20, "n": "\xff"},\n'
        b' {"bk_inst_id": 3, "bk_asst_inst_id": 30}]\n',
    )
    facts, bad = await read_logged(FileSource(p, read_size=5))
    assert [f[2] for f in facts] == [1, 3]
    assert [(e["origin"], e["reason"]) for e in bad] == [
        (f"{p}:2", "invalid bytes for encoding utf-8")
    ]
    p = write(tmp_path, "u.json", b'[{"bk_inst_id": 1, "bk_asst_inst_id": 10}\xff]')
    with pytest.raises(SourceError, match="invalid bytes for encoding"):
        await read(FileSource(p))


async def test_other_encodings(tmp_path: Path) -> None:
    text = "bk_inst_id,bk_asst_inst_id,名称\n1,2,交换机\n"
    for enc in ("utf-16", "gbk", "utf-8-sig"):
        p = write(tmp_path, f"t-{enc}.csv", text.encode(enc))
        assert await read(FileSource(p, encoding=enc)) == [("1", "2", 2)]


async def test_chunking(tmp_path: Path) -> None:
    n = 2 * CHUNK_SIZE + 5
    p = write(
        tmp_path, "t.csv", "bk_inst_id,bk_asst_inst_id\n" + "".join(f"{i},{i}\n" for i in range(n))
    )
    src = FileSource(p, read_size=1000)
    sizes = [len(c) async for c in src.facts()]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, 5]
    assert src.stats.records == n


async def test_stats_reset_per_read_and_log_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncd.support.log.MAX_LOGGED_BAD", 3)
    p = write(tmp_path, "t.csv", "bk_inst_id,bk_asst_inst_id\n" + "x\n" * 10 + "1,2\n")
    src = FileSource(p)
    for _ in range(2):
        with capture_logs() as logs:
            assert await read(src) == [("1", "2", 12)]
        assert src.stats.bad == 10 and src.stats.records == 11
        assert [e["event"] for e in logs] == ["bad_record"] * 3 + ["bad_records_not_logged"]
        assert logs[-1]["count"] == 7


async def test_missing_file_and_header(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError, match=f"{missing}: file not found"):
        await read(FileSource(missing))
    with pytest.raises(SourceError, match="is a directory, not a regular file"):
        await read(FileSource(tmp_path))  # a directory
    p = write(tmp_path, "t.csv", "bk_inst_id,target\n1,2\n")
    with pytest.raises(SourceError, match=r"no column 'bk_asst_inst_id' \(columns: bk_inst_id"):
        await read(FileSource(p))
    p = write(tmp_path, "e.csv", "\n\n")
    with pytest.raises(SourceError, match="no CSV header"):
        await read(FileSource(p))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        FileSource(tmp_path / "t", format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoding"):
        FileSource(tmp_path / "t", encoding="no-such-codec")


def test_fingerprint(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    src = FileSource(p)
    assert src.fingerprint() is None
    p.write_text("a,b\n")
    first = src.fingerprint()
    assert first is not None and first == src.fingerprint()
    p.write_text("a,b\n1,2\n")
    assert src.fingerprint() != first


async def test_early_exit_closes_file_and_loop_stays_responsive(tmp_path: Path) -> None:
    n = 5 * CHUNK_SIZE
    p = write(
        tmp_path, "t.csv", "bk_inst_id,bk_asst_inst_id\n" + "".join(f"{i},{i}\n" for i in range(n))
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    src = FileSource(p)
    gen = src.facts()
    async for _chunk in gen:
        break
    await gen.aclose()  # type: ignore[attr-defined]
    task.cancel()
    assert ticks > 0
    # the file handle is released: reading again works and sees everything
    assert len(await read(src)) == n
