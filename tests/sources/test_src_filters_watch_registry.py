"""Filters as a wrapper source, file watching on a real file, and the source registry."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from src_helpers import read_all

from syncd.sources.base import RawFact, ReadStats
from syncd.sources.command import CommandSource
from syncd.sources.filters import FilteredSource, FilterSettings
from syncd.sources.http import HttpSource
from syncd.sources.netbox import NetBoxSource
from syncd.sources.registry import SourceSettings, make_source
from syncd.sources.watch import fingerprint, watch_file


class ListSource:
    label = "list"

    def __init__(self, facts: list[RawFact]) -> None:
        self._facts = facts
        self._stats = ReadStats()

    def origin(self, record: int) -> str:
        return f"list:{record}"

    @property
    def stats(self) -> ReadStats:
        return self._stats

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        yield self._facts[:2]
        yield self._facts[2:]


FACTS: list[RawFact] = [
    ("sw-a", "10.0.0.1", 1),
    ("sw-b", "10.0.0.2", 2),
    ("lab-sw", "10.0.0.3", 3),
    ("sw-c", "192.168.1.4", 4),
    (17, None, 5),
]


async def test_filters_include_and_exclude() -> None:
    src = FilteredSource(
        ListSource(FACTS),
        FilterSettings(include_source=["sw-*"], exclude_target=["192.168.*"]),
    )
    assert [f[2] for f in await read_all(src)] == [1, 2]
    assert src.stats.extra["filtered"] == 3 and src.origin(2) == "list:2"
    only_ten = FilteredSource(ListSource(FACTS), FilterSettings(include_target=["10.*"]))
    assert [f[2] for f in await read_all(only_ten)] == [1, 2, 3]
    no_b = FilteredSource(ListSource(FACTS), FilterSettings(exclude_source=["sw-b", "1?"]))
    assert [f[2] for f in await read_all(no_b)] == [1, 3, 4]


def test_filter_settings() -> None:
    assert not FilterSettings().active
    with pytest.raises(ValidationError):
        FilterSettings.model_validate({"include": ["x"]})


async def test_watch_file_sees_touch_replace_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "topology.csv"
    path.write_text("a,b\n", encoding="utf-8")
    changes: list[int] = []
    changed = asyncio.Event()

    def on_change() -> None:
        changes.append(1)
        changed.set()

    stop = asyncio.Event()
    task = asyncio.create_task(watch_file(path, on_change, 0.02, stop))

    async def until(n: int) -> None:
        async with asyncio.timeout(5):
            while len(changes) < n:
                await changed.wait()
                changed.clear()

    await asyncio.sleep(0.1)
    assert changes == []  # unchanged: no callback
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touch
    await until(1)
    fresh = tmp_path / "new.csv"  # atomic replace, same size
    fresh.write_text("c,d\n", encoding="utf-8")
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    fresh.replace(path)
    await until(2)
    path.unlink()
    await until(3)
    assert fingerprint(path) is None
    stop.set()
    await asyncio.wait_for(task, 2)
    assert len(changes) == 3


async def test_watch_survives_a_failing_callback(tmp_path: Path) -> None:
    path = tmp_path / "f"
    stop = asyncio.Event()
    calls = 0
    second = asyncio.Event()

    def boom() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            second.set()
        raise RuntimeError("bug")

    task = asyncio.create_task(watch_file(path, boom, 0.02, stop))
    await asyncio.sleep(0.05)
    path.write_text("1", encoding="utf-8")
    await asyncio.sleep(0.1)
    path.write_text("22", encoding="utf-8")
    await asyncio.wait_for(second.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 2)


class Holder(BaseModel):
    source: SourceSettings


def test_registry_builds_each_source() -> None:
    cases = {
        "http": ({"type": "http", "url": "https://api.example.com/x"}, HttpSource),
        "netbox": (
            {"type": "netbox", "url": "https://nb.example.com", "token_env": "T"},
            NetBoxSource,
        ),
        "command": ({"type": "command", "argv": [sys.executable, "-V"]}, CommandSource),
    }
    for raw, cls in cases.values():
        settings = Holder.model_validate({"source": raw}).source
        assert isinstance(make_source(settings, name="rel"), cls)
    settings = Holder.model_validate({"source": cases["http"][0]}).source
    wrapped = make_source(settings, name="rel", filters=FilterSettings(include_source=["a*"]))
    assert isinstance(wrapped, FilteredSource)
    with pytest.raises(ValidationError, match=r"netbox\.url"):
        Holder.model_validate({"source": {"type": "netbox", "url": "nb.example.com"}})
    with pytest.raises(ValidationError):
        Holder.model_validate({"source": {"type": "ftp"}})


async def test_registry_file_source(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n2,1002\n", encoding="utf-8")
    settings = Holder.model_validate({"source": {"type": "file", "path": str(path)}}).source
    src = make_source(settings, name="rel", filters=FilterSettings(exclude_source=["2"]))
    assert [f[:2] for f in await read_all(src)] == [("1", "1001")]
