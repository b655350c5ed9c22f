"""bk-cmdb sends two create events per batch-created association (two inserts without a
transaction, core/instance.go:149-172): the watch counts and applies each change once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import Settings
from syncd.core.watchevents import CreateEchoes, Event
from syncd.engine.reconcile import Reconciler
from syncd.informer.watch import Watcher
from syncd.state import StateStore
from tests.helpers import ASST, capture_logs, fixture_dict, load, write_config, write_csv

DESIRED = [(s, 1000 + h) for s in range(1, 5) for h in range(1, 51)]  # 200 pairs
THEIRS = [(9, 1000 + h) for h in range(1, 31)]


def _event(kind: str, assoc: int, cursor: str = "c") -> Event:
    return Event(kind, cursor, "bk_switch", ASST, 1, 1000 + assoc, assoc, None)


def test_the_second_create_of_an_association_is_dropped_across_answers() -> None:
    echoes = CreateEchoes()
    first = echoes.fresh([_event("create", 1, "a"), _event("create", 1, "b"), _event("create", 2)])
    assert [(e.association_id, e.cursor) for e in first] == [(1, "a"), (2, "c")]
    # The echo of 2 comes in the next answer; the delete of 1 and an id-less create stay.
    second = echoes.fresh([_event("create", 2, "d"), _event("delete", 1), _event("create", 0)])
    assert [(e.type, e.association_id) for e in second] == [("delete", 1), ("create", 0)]
    assert echoes.dropped == 2


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=300))
def test_echoes_keep_one_create_per_id_and_bounded_memory(ids: list[int]) -> None:
    echoes = CreateEchoes(size=64)
    kept = echoes.fresh([_event("create", i) for i in ids])
    assert [e.association_id for e in kept] == list(dict.fromkeys(ids))
    assert echoes.dropped == len(ids) - len(kept)
    assert len(echoes._ids) <= 64


@asynccontextmanager
async def _watching(settings: Settings) -> AsyncIterator[tuple[Reconciler, Watcher]]:
    store, _ = StateStore.open(settings.state.path)
    try:
        async with CmdbClient(settings.cmdb, watch_slots=1) as client:
            engine = Reconciler(settings, client, store)
            watcher = Watcher(settings, engine)
            async with watcher.running():
                yield engine, watcher
    finally:
        store.close()


async def _until(what: Callable[[], bool]) -> None:
    async with asyncio.timeout(30.0):
        while not what():  # noqa: ASYNC110 (state changes in another task)
            await asyncio.sleep(0.05)


async def test_doubled_creates_give_one_event_and_one_drift_line_each(tmp_path: Path) -> None:
    sim = Simulator(
        Fixture.from_dict(fixture_dict(switches=10, hosts=100)),
        SimulatorOptions(watch_timeout_s=1.0),
    )
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", DESIRED)
        settings = load(write_config(tmp_path, url, topo, interval=3600))
        with capture_logs() as logs:
            async with _watching(settings) as (engine, watcher):
                assert (await engine.cycle()).converged  # 200 pairs, 400 create events
                watch = watcher.objects["bk_switch"]
                await _until(lambda: watch.echoes.dropped >= len(DESIRED))
                async with CmdbClient(settings.cmdb) as other:
                    await other.batch_create("bk_switch", "host", ASST, THEIRS)
                await _until(lambda: watch.echoes.dropped >= len(DESIRED) + len(THEIRS))
                await asyncio.sleep(1.5)  # past the adoption grace
                assert watch.events["create"] == len(DESIRED) + len(THEIRS)
                assert sim.stats()["watch_events_total"] == 2 * (len(DESIRED) + len(THEIRS))
                assert not watcher.relists
    drift = [line for line in logs if line.get("event") == "drift"]
    # Only the other caller's pairs, each once, as created and now known.
    assert sorted((d["bk_inst_id"], d["bk_asst_inst_id"]) for d in drift) == sorted(THEIRS)
    assert {(d["change"], d["action"]) for d in drift} == {("created", "known")}


async def test_a_release_without_inst_asst_events_says_how_to_stop_watching(
    tmp_path: Path,
) -> None:
    """bk-cmdb 3.10.9 with auth on answers every inst_asst watch with 1199046 (no IAM
    action for it, release-v3.10.9:src/ac/iam/adaptor.go:386-394): the watch says what
    to set, and syncing goes on."""
    sim = Simulator(
        Fixture.from_dict(fixture_dict(switches=10, hosts=100)),
        SimulatorOptions(watch_timeout_s=1.0, cmdb_version="3.10.9"),
    )
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", DESIRED)
        settings = load(write_config(tmp_path, url, topo, interval=3600))
        with capture_logs() as logs:
            async with _watching(settings) as (engine, watcher):
                assert (await engine.cycle()).converged
                await _until(lambda: any(x.get("event") == "watch_failed" for x in logs))
                assert watcher.objects["bk_switch"].cursor is None
    failed = [line for line in logs if line.get("event") == "watch_failed"]
    assert "1199046" in failed[0]["error"]
    assert "sync.watch = false" in failed[0]["hint"]
    assert sim.pairs(ASST) == set(DESIRED)
