"""Concurrent NetBox paging over real HTTP: the loopback stand-in serves recorded rows with
NetBox's pagination (bench/netbox_standin.py); the page plan and its checks are pure."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from src_helpers import load_recording, read_all, serve

from bench import netbox_read
from bench.netbox_standin import StandIn, recorded_rows, serve_standin, synthetic_cables
from syncd.sources.base import RawFact, SourceError
from syncd.sources.netbox import NetBoxSource
from syncd.sources.paging import Page, PagingDrift, assemble, plan
from syncd.sources.settings import NetBoxSourceSettings

TOKEN = "0123456789abcdef0123456789abcdef01234567"
CABLES = "/api/dcim/cables/"
RECORDINGS = [
    "cables_dc1",
    "cables_dc1_tag_prod",
    "cables_all_ip",
    "cables_dc1_cf",
    "interfaces_dc1",
    "interfaces_dc1_any_status",
    "interfaces_all_server_role",
]


def source(url: str, **fields: Any) -> NetBoxSource:
    settings = NetBoxSourceSettings.model_validate(
        {"type": "netbox", "url": url, "token": TOKEN, **fields}
    )
    return NetBoxSource(settings, name="paging")


async def read(state: StandIn, **fields: Any) -> tuple[list[RawFact], NetBoxSource]:
    async with serve_standin(state) as nb:
        src = source(nb.url, **fields)
        return await read_all(src), src


# -- the plan and its checks (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "first", "size", "conc"),
    [(11, 4, 4, 4), (1500, 50, 1000, 4), (50_000, 50, 1000, 4), (7, 2, 2, 3), (100, 50, 60, 1)],
)
def test_plan_covers_every_row_once_with_one_row_overlap(
    count: int, first: int, size: int, conc: int
) -> None:
    pages = plan(count, first, size, conc)
    end = first - 1  # last position read so far
    for offset, limit in pages:
        assert offset == end  # starts on the previous page's last row
        assert 2 <= limit <= size
        end = offset + limit - 1
    assert end == count - 1
    if count - first > conc * size:
        assert len(pages) % conc == 0  # full rounds of concurrent requests


def test_plan_nothing_left_after_the_first_page() -> None:
    assert plan(40, 40, 1000, 4) == []


def rows(*ids: int) -> list[dict[str, int]]:
    return [{"id": i} for i in ids]


def test_assemble_joins_overlapping_pages() -> None:
    first = Page(6, rows(1, 2, 3), "next")
    later = [(2, 3, Page(6, rows(3, 4, 5), None)), (4, 2, Page(6, rows(5, 7), None))]
    assert assemble(first, later) == rows(1, 2, 3, 4, 5, 7)


@pytest.mark.parametrize(
    ("later", "why"),
    [
        ([(2, 3, Page(7, rows(3, 4, 5), None)), (4, 2, Page(7, rows(5, 7), None))], "count went"),
        ([(2, 3, Page(6, rows(4, 5, 7), None)), (4, 2, Page(6, rows(7, 8), None))], "start where"),
        ([(2, 3, Page(6, rows(3, 4), None)), (4, 2, Page(6, rows(4, 7), None))], "has 2 rows"),
        ([(2, 3, Page(6, rows(3, 2, 5), None)), (4, 2, Page(6, rows(5, 7), None))], "read twice"),
    ],
)
def test_assemble_refuses_pages_that_do_not_join(
    later: list[tuple[int, int, Page]], why: str
) -> None:
    with pytest.raises(PagingDrift, match=why):
        assemble(Page(6, rows(1, 2, 3), "next"), later)


# -- over HTTP -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
async def test_concurrent_read_gives_the_sequential_pairs_on_the_recordings(name: str) -> None:
    settings = load_recording(name)["recorded_with"]
    seq, _ = await read(recorded_rows(name), **{**settings, "page_size": 2, "concurrency": 1})
    state = recorded_rows(name)
    par, src = await read(state, **{**settings, "page_size": 2, "concurrency": 4})
    assert par == seq
    assert [list(f) for f in par] == load_recording(name)["facts_at_recording"]
    rows_served = len(next(iter(state.lists.values())))
    if rows_served > 2:
        assert state.peak_in_flight > 1  # pages really were fetched at once
    assert "rereads" not in src.stats.extra


async def test_only_the_used_fields_are_asked_for() -> None:
    state = recorded_rows("cables_dc1")
    await read(state, site=["dc1"], page_size=4)
    asked = [ex for ex in state.exchanges if ex["path"] == CABLES]
    assert asked and all(
        ["fields", "id,a_terminations,b_terminations"] in ex["query"] for ex in asked
    )
    assert all(
        set(r) == {"id", "a_terminations", "b_terminations"} for r in asked[0]["body"]["results"]
    )


def add_cable(state: StandIn, ident: int, at: int | None = None) -> None:
    """A new switch-to-server cable (and its server) in the served list."""
    row = copy.deepcopy(state.lists[CABLES][0])
    host = 10_000 + ident
    row["id"] = ident
    row["b_terminations"][0]["object"]["device"].update(id=host, name=f"new-{ident}")
    state.devices[host] = {**state.devices[max(state.devices)], "id": host, "name": f"new-{ident}"}
    rows = state.lists[CABLES]
    rows.insert(len(rows) if at is None else at, row)


async def test_a_cable_added_during_the_read_makes_it_read_again() -> None:
    state = synthetic_cables(120)

    def once(s: StandIn, n: int) -> None:
        if n == 3:  # after the first page, while the others are in flight
            add_cable(s, 5000)

    state.on_request = once
    facts, src = await read(state, page_size=20)
    assert src.stats.extra["rereads"] == 1
    hosts = sorted(str(f[1]) for f in facts)
    assert len(facts) == 121 and len(set(hosts)) == 121 and "new-5000" in hosts


async def test_added_and_removed_with_the_same_count_is_caught() -> None:
    """The count alone cannot see it: a removal before a page shifts its rows by one."""
    state = synthetic_cables(120)

    def swap(s: StandIn, n: int) -> None:
        if n == 2:
            del s.lists[CABLES][1]
            add_cable(s, 5000)

    state.on_request = swap
    facts, src = await read(state, page_size=20)
    assert src.stats.extra["rereads"] == 1
    assert len(facts) == 120 and len({f[1] for f in facts}) == 120


async def test_a_list_that_keeps_changing_fails_the_read_clearly() -> None:
    state = synthetic_cables(120)
    state.on_request = lambda s, n: add_cable(s, 5000 + n) if n % 2 == 0 else None
    with pytest.raises(SourceError, match=r"NetBox changed during each .*count went from"):
        await read(state, page_size=20)


async def test_a_failing_page_fails_the_read() -> None:
    state = synthetic_cables(120)
    state.fail_requests = {3}  # a page after the first
    async with serve_standin(state) as nb:
        src = source(nb.url, page_size=20)
        got: list[RawFact] = []
        with pytest.raises(SourceError, match="HTTP 500"):
            async for chunk in src.facts():
                got.extend(chunk)
    assert got == []  # no partial desired set
    assert state.list_requests >= 3 and src.stats.extra["pages"] < state.list_requests


@pytest.mark.parametrize("concurrency", [2, 3])
async def test_concurrency_bound_is_respected(concurrency: int) -> None:
    state = synthetic_cables(400)
    state.cost_ms = 1.0
    state.device_cost_ms = 0.2
    facts, _ = await read(state, page_size=20, concurrency=concurrency)
    assert len(facts) == 400
    assert state.peak_in_flight == concurrency  # used, never exceeded (lists and devices)


async def test_no_count_follows_next_one_page_at_a_time() -> None:
    state = synthetic_cables(60)
    state.omit_count = True
    facts, src = await read(state, page_size=20)
    assert len(facts) == 60
    assert state.list_requests == 3  # limit=20 each (no 50-row count probe), via next links
    assert src.stats.extra["pages"] == 3 + 1  # + one device lookup (60 hosts, 2 switches)
    assert state.peak_in_flight == 1


async def test_a_page_cap_below_page_size_is_followed() -> None:
    """NetBox caps limit at MAX_PAGE_SIZE silently: the short pages tell the cap."""
    state = synthetic_cables(300)
    state.max_page_size = 30
    facts, src = await read(state, page_size=100)
    assert len(facts) == 300 and len({f[1] for f in facts}) == 300
    capped = [ex for ex in state.exchanges if ex["path"] == CABLES]
    assert all(len(ex["body"]["results"]) <= 30 for ex in capped)
    assert "rereads" not in src.stats.extra  # the first page already showed the cap
    assert src.stats.bad == 0  # device lookups followed their next links too


async def test_a_page_cap_above_the_first_page_reads_again_with_it() -> None:
    state = synthetic_cables(400)
    state.max_page_size = 60  # the 50-row first page is whole; the 100-row pages are not
    facts, src = await read(state, page_size=100)
    assert len(facts) == 400 and len({f[1] for f in facts}) == 400
    assert src.stats.extra["rereads"] == 1


async def test_max_pages_still_bounds_the_read() -> None:
    with pytest.raises(SourceError, match="max_pages=3"):
        await read(synthetic_cables(200), page_size=20, max_pages=3)


def test_settings_concurrency() -> None:
    base = {"type": "netbox", "url": "https://netbox.example.com", "token": TOKEN}
    assert NetBoxSourceSettings.model_validate(base).concurrency == 4
    with pytest.raises(ValueError, match="concurrency"):
        NetBoxSourceSettings.model_validate({**base, "concurrency": 0})


@pytest.mark.slow  # the stand-in runs in its own process
def test_benchmark_runs_and_reads_the_same_pairs(tmp_path: Path) -> None:
    r = netbox_read.run(tmp_path, 60, cost_ms=0.5, page_size=20)
    assert r["cables"] == 60 and r["concurrent_list_requests"] > 1
    assert r["sequential_s"] > 0 and r["concurrent_s"] > 0 and r["peak_in_flight"] <= 4


async def test_a_next_link_looping_back_fails_the_read() -> None:
    page = {"count": None, "next": "/api/dcim/cables/?limit=1&offset=1", "results": [{"id": 1}]}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(page)

    async with serve(handler) as url:
        with pytest.raises(SourceError, match="loops back"):
            await read_all(source(url, page_size=1))
