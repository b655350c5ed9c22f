"""The watch (issue 15 item 2) in process: a Reconciler and a Watcher against the
simulator's resource_watch over loopback."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import Settings
from syncd.core.pairs import pack
from syncd.core.watchevents import Event, WatchGap, event_time, last_wins, parse_answer
from syncd.engine.reconcile import Reconciler
from syncd.informer.stream import WatchTimings
from syncd.informer.watch import Watcher
from syncd.state import StateStore
from tests.helpers import ASST, capture_logs, fixture_dict, load, write_config, write_csv

OTHER = "bk_switch_default_host"
"""A second model association between the same objects: its events are not ours."""
WAIT = 30.0
FAST = WatchTimings(pace=0.1, adopt_grace=0.3, retry_base=0.1, retry_cap=1.0)
"""The watch's waits, shortened: the tests wait for what they check, not for the clock."""


def _fixture() -> dict[str, Any]:
    doc = fixture_dict(switches=10, hosts=100)
    doc["model_associations"].append(
        {
            "bk_obj_asst_id": OTHER,
            "bk_obj_id": "bk_switch",
            "bk_asst_id": "default",
            "bk_asst_obj_id": "host",
            "mapping": "n:n",
        }
    )
    return doc


def _fixture_with_hosts() -> dict[str, Any]:
    doc = _fixture()
    doc["model_associations"].append(
        {
            "bk_obj_asst_id": "host_connect_host",
            "bk_obj_id": "host",
            "bk_asst_id": "connect",
            "bk_asst_obj_id": "host",
            "mapping": "n:n",
        }
    )
    return doc


def _sim(**options: Any) -> Simulator:
    return Simulator(
        Fixture.from_dict(_fixture()), SimulatorOptions(watch_timeout_s=1.0, **options)
    )


DESIRED = [(s, 1000 + h) for s in range(1, 5) for h in range(1, 51)]  # 200 pairs


@asynccontextmanager
async def _daemon_like(settings: Settings) -> AsyncIterator[tuple[Reconciler, Watcher]]:
    """What `syncd run` wires: an engine, and a watcher primed before the first list."""
    store, _ = StateStore.open(settings.state.path)
    try:
        async with CmdbClient(settings.cmdb, watch_slots=1) as client:
            engine = Reconciler(settings, client, store)
            watcher = Watcher(settings, engine, timings=FAST)
            async with watcher.running():
                yield engine, watcher
    finally:
        store.close()


async def _until(what: Callable[[], bool]) -> None:
    """Wait (bounded by WAIT seconds) until ``what`` holds."""
    async with asyncio.timeout(WAIT):
        while not what():  # noqa: ASYNC110 (state changes in another task, no event to wait on)
            await asyncio.sleep(0.05)


def _settings(tmp_path: Path, url: str, pairs: list[tuple[int, int]], **kw: Any) -> Settings:
    return load(
        write_config(tmp_path, url, write_csv(tmp_path / "t.csv", pairs), interval=3600, **kw)
    )


# -- the pure part -----------------------------------------------------------------


def _cursor(assoc: int, sec: int) -> str:
    raw = f"1\r13\r{assoc}\rdelete\r{sec}\r1\r{assoc}"
    return base64.b64encode(raw.encode()).decode()


def test_parse_answer_events_cursor_and_the_no_event_answer() -> None:
    detail = {"id": 7, "bk_obj_id": "bk_switch", "bk_obj_asst_id": ASST}
    data = {
        "bk_watched": True,
        "bk_events": [
            {
                "bk_cursor": _cursor(7, 1_800_000_000),
                "bk_event_type": "delete",
                "bk_detail": {**detail, "bk_inst_id": 1, "bk_asst_inst_id": 1001},
            },
            {"bk_cursor": "c2", "bk_event_type": "update", "bk_detail": detail},
            {"bk_cursor": "c3", "bk_event_type": "create", "bk_detail": {"id": "x"}},
        ],
    }
    events, cursor, entries = parse_answer(data)
    assert cursor == "c3" and entries == 3
    assert [(e.type, e.src, e.dst, e.association_id) for e in events] == [("delete", 1, 1001, 7)]
    assert event_time(events[0].cursor) == 1_800_000_000.0
    assert event_time("not a cursor") is None
    quiet = {"bk_watched": False, "bk_events": [{"bk_cursor": "c9", "bk_detail": None}]}
    assert parse_answer(quiet) == ([], "c9", 0)
    broken: object
    for broken in ({"bk_watched": True, "bk_events": []}, {"bk_events": [{}]}, None):
        with pytest.raises(WatchGap):
            parse_answer(broken)


def test_last_event_of_a_pair_wins() -> None:
    def ev(kind: str, src: int) -> Event:
        return Event(kind, "c", "bk_switch", ASST, src, 1001, 1, None)

    final = last_wins([ev("create", 1), ev("delete", 2), ev("delete", 1), ev("create", 2)])
    assert [(e.type, e.src) for e in final.values()] == [("delete", 1), ("create", 2)]


# -- against the simulator ----------------------------------------------------------


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_pairs_deleted_behind_syncd_come_back_without_a_signal(
    tmp_path: Path, gateway: str
) -> None:
    sim = _sim()
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED, gateway=gateway)
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, watcher):
                assert (await engine.cycle()).converged
                assert sim.pairs(ASST) == set(DESIRED)
                cycles = engine.cycles
                gone = DESIRED[:30]
                sim.delete_pairs(ASST, gone)
                await _until(lambda: sim.pairs(ASST) == set(DESIRED))
                await _until(lambda: watcher.repaired["switch-host"] == len(gone))
                assert engine.cycles == cycles  # no cycle: the watch asked for the run
                assert watcher.snapshot()["objects"]["bk_switch"]["events"]["delete"] >= 30
    drift = [line for line in logs if line.get("event") == "drift"]
    assert sorted((d["bk_inst_id"], d["bk_asst_inst_id"]) for d in drift) == sorted(gone)
    assert {d["change"] for d in drift} == {"deleted"} and all(d["at"] for d in drift)
    assert sim.stats()["requests_by_api"]["resource_watch"] >= 2


async def test_pairs_created_by_others_become_known_and_are_never_sent(tmp_path: Path) -> None:
    sim = _sim()
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        theirs = [(9, 1000 + h) for h in range(1, 21)]
        async with _daemon_like(settings) as (engine, _):
            await engine.cycle()
            async with CmdbClient(settings.cmdb) as other:
                answer = await other.batch_create("bk_switch", "host", ASST, theirs)
                assert answer.data
            keys = {pack(s, d) for s, d in theirs}
            await _until(lambda: engine.known.holds("switch-host", keys) == keys)
            sent = sim.stats()["details_received"]
            write_csv(tmp_path / "t.csv", DESIRED + theirs)
            report = await engine.cycle()
            assert report.converged and report.total("exists") == 0
            assert sim.stats()["details_received"] == sent  # nothing sent for them
            # Known, not owned: a prune would never delete them.
            assert not keys & engine.store.owned_keys("switch-host")


async def test_events_of_other_associations_are_ignored(tmp_path: Path) -> None:
    sim = _sim()
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        async with _daemon_like(settings) as (engine, watcher):
            await engine.cycle()
            same = DESIRED[:10]  # the same instance pairs, in the other association
            async with CmdbClient(settings.cmdb) as other:
                await other.batch_create("bk_switch", "host", OTHER, same)
            sim.delete_pairs(OTHER, same)
            events = watcher.objects["bk_switch"].events
            await _until(lambda: events["delete"] >= 10 and events["create"] >= 10)
            await asyncio.sleep(FAST.adopt_grace + 0.3)  # past the adoption grace
            keys = {pack(s, d) for s, d in DESIRED}
            assert engine.known.holds("switch-host", keys) == keys
            assert engine.store.count("switch-host") == len(DESIRED)
            assert watcher.drifted.get("switch-host", set()) == set()
            assert sum(watcher.repaired.values()) == 0 and not watcher.relists


async def test_an_expired_cursor_relists_and_loses_nothing(tmp_path: Path) -> None:
    sim = _sim(watch_retention_s=1.0)
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        async with _daemon_like(settings) as (engine, _):
            assert (await engine.cycle()).converged
            await _until(lambda: engine.store.meta.watch_cursor("bk_switch") is not None)
        # syncd is away: its stored cursor ages past retention, and pairs disappear.
        store = StateStore.open(settings.state.path)[0]
        assert store.meta.watch_cursor("bk_switch") is not None
        store.close()
        gone = DESIRED[50:80]
        sim.delete_pairs(ASST, gone)
        await asyncio.sleep(1.2)
        async with CmdbClient(settings.cmdb) as other:  # a newer event than syncd's cursor
            await other.batch_create("bk_switch", "host", OTHER, [(9, 1001)])
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, watcher):
                await _until(lambda: sim.pairs(ASST) == set(DESIRED))
                assert watcher.relists == {"expired": 1}
    assert any(line.get("event") == "watch_expired" for line in logs)
    assert any(line.get("event") == "resync" for line in logs)


async def test_a_restart_goes_on_from_the_stored_cursor_without_a_relist(tmp_path: Path) -> None:
    sim = _sim()
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        async with _daemon_like(settings) as (engine, _):
            assert (await engine.cycle()).converged
            await _until(lambda: engine.store.meta.watch_cursor("bk_switch") is not None)
        gone = DESIRED[100:110]
        sim.delete_pairs(ASST, gone)  # while syncd is away
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, watcher):
                await _until(lambda: sim.pairs(ASST) == set(DESIRED))
                # Counted when the repairing run ends, a moment after its creates land.
                await _until(lambda: watcher.repaired["switch-host"] == len(gone))
                assert not watcher.relists
    assert not any(line.get("event") == "resync" for line in logs)  # the events sufficed
    drift = [line for line in logs if line.get("event") == "drift"]
    assert sorted((d["bk_inst_id"], d["bk_asst_inst_id"]) for d in drift) == sorted(gone)


async def test_relist_interval_lists_again_anyway(tmp_path: Path) -> None:
    sim = _sim()
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED, sync_extra="relist_interval = 1")
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, watcher):
                await engine.cycle()
                await _until(lambda: watcher.relists["interval"] >= 1)
                await _until(lambda: sum(1 for x in logs if x.get("event") == "resync") >= 2)
                assert engine.cycles == 1


async def test_events_during_a_list_are_applied_on_top_of_it(tmp_path: Path) -> None:
    """A pair deleted after its page was read is stale in the list; the event, received
    while the list goes on, is applied again at its end, so the same cycle re-creates it."""
    sim = _sim()
    desired = [(s, 1000 + h) for s in range(1, 11) for h in range(1, 101)]  # 1,000: 2 pages
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, desired)
        async with _daemon_like(settings) as (engine, watcher):
            assert (await engine.cycle()).converged
            events = watcher.objects["bk_switch"].events
            plain = engine.client.iter_associations

            async def slow_list(*args: Any, **kw: Any) -> AsyncIterator[list[tuple[int, int, int]]]:
                first = True
                async for page in plain(*args, **kw):
                    yield page
                    if first and not kw and len(args) == 2:
                        first = False
                        before = events["delete"]
                        sim.delete_pairs(ASST, [desired[3]])  # on the page just read
                        await _until(lambda b=before: events["delete"] > b)  # type: ignore[misc]

            engine.client.iter_associations = slow_list  # type: ignore[method-assign]
            report = await engine.cycle(resync=True)
            assert report.total("created") == 1
            assert sim.pairs(ASST) == set(desired)


async def test_from_now_is_now_even_when_the_newest_event_is_another_objects(
    tmp_path: Path,
) -> None:
    """Filtered by bk_switch, a newest event between hosts would answer the no-event
    cursor: the watch would replay every event kept (hours of them) after its first list."""
    sim = Simulator(Fixture.from_dict(_fixture_with_hosts()), SimulatorOptions(watch_timeout_s=1))
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        async with CmdbClient(settings.cmdb) as other:  # history, then a host-host event
            await other.batch_create("bk_switch", "host", ASST, DESIRED[:50])
            sim.delete_pairs(ASST, DESIRED[:50])
            await other.batch_create("host", "host", "host_connect_host", [(1001, 1002)])
        async with _daemon_like(settings) as (engine, watcher):
            assert (await engine.cycle()).converged
            events = watcher.objects["bk_switch"].events
            await _until(lambda: events["create"] >= len(DESIRED))  # its own creates
            await asyncio.sleep(1.5)
            assert events == {"create": len(DESIRED)}  # not the 100 events before it
            assert not watcher.relists


async def test_a_held_watch_never_takes_a_writers_slot(tmp_path: Path) -> None:
    """concurrency = 1: the cycle's reads and writes still go out beside the held watch."""
    sim = Simulator(Fixture.from_dict(_fixture()), SimulatorOptions(watch_timeout_s=5))
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED, concurrency=1)
        async with _daemon_like(settings) as (engine, watcher):
            await _until(lambda: watcher.objects["bk_switch"].state == "watching")
            report = await engine.cycle()
            assert report.converged and report.total("created") == len(DESIRED)
            stats = sim.stats()
            # The cycle alone never has two in flight: the other was the held watch.
            assert stats["peak_in_flight"] == 2


async def test_a_refused_watch_says_so_once_and_syncing_goes_on(tmp_path: Path) -> None:
    doc = _fixture()
    doc["apps"][0]["deny"] = ["resource_watch"]
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions(watch_timeout_s=1))
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = _settings(tmp_path, url, DESIRED)
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, watcher):
                assert (await engine.cycle()).converged
                # Six refused watches, and after the last one's answer the object is
                # "failing" again (between a retry's request and its answer it is "starting").
                await _until(
                    lambda: (
                        sim.stats()["requests_by_api"]["resource_watch"] >= 6
                        and watcher.objects["bk_switch"].state == "failing"
                    )
                )
                assert sim.pairs(ASST) == set(DESIRED)
    failed = [line for line in logs if line.get("event") == "watch_failed"]
    assert len(failed) >= 2  # at start-up, then each retry
    assert [line["log_level"] for line in failed].count("warning") <= 2  # prime + 1st retry
    assert "9900403" in failed[0]["error"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_event = st.fixed_dictionaries(
    {
        "bk_cursor": st.text(max_size=6) | st.integers(),
        "bk_event_type": st.sampled_from(["create", "delete", "update", ""]) | _json,
        "bk_detail": _json
        | st.fixed_dictionaries(
            {
                "id": _json,
                "bk_obj_asst_id": st.just(ASST) | _json,
                "bk_inst_id": _json,
                "bk_asst_inst_id": _json,
            }
        ),
    }
)


@given(
    st.one_of(
        _json,
        st.fixed_dictionaries(
            {"bk_watched": st.booleans() | _json, "bk_events": st.lists(_event | _json, max_size=5)}
        ),
    )
)
def test_parse_answer_is_total_over_hostile_answers(data: object) -> None:
    """Whatever a CMDB (or something in front of it) answers, the watch gets events and a
    cursor, or a WatchGap (which means: relist): never another exception."""
    try:
        events, cursor, _ = parse_answer(data)
    except WatchGap:
        return
    assert isinstance(cursor, str) and cursor
    assert all(isinstance(e, Event) for e in events)
