"""Creates slower than the watch's adoption grace: syncd's own pairs, seen by the watch
before their answer, are not someone else's (no `drift created`); a real foreign create
still is. Real HTTP to the simulator with a per-detail delay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.engine.reconcile import Reconciler
from syncd.informer.stream import WatchTimings
from syncd.informer.watch import Watcher
from syncd.state import StateStore
from tests.helpers import ASST, capture_logs, fixture_dict, load, write_config, write_csv

DESIRED = [(s, 1000 + h) for s in range(1, 5) for h in range(1, 51)]  # 200: one batch
PER_DETAIL_MS = 12.0  # 200 x 12 ms = 2.4 s a batch, past the 1 s grace
GRACE = WatchTimings().adopt_grace  # the shipped adoption grace


async def _until(what: Callable[[], bool], limit: float = 30.0) -> None:
    async with asyncio.timeout(limit):
        while not what():  # noqa: ASYNC110 (state changes in another task)
            await asyncio.sleep(0.05)


async def test_slow_creates_are_not_drift_and_a_foreign_create_still_is(tmp_path: Path) -> None:
    assert PER_DETAIL_MS * len(DESIRED) / 1000 > 2 * GRACE
    sim = Simulator(
        Fixture.from_dict(fixture_dict(switches=10, hosts=100)),
        SimulatorOptions(watch_timeout_s=1.0, per_detail_ms=PER_DETAIL_MS),
    )
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", DESIRED)
        settings = load(write_config(tmp_path, url, topology, interval=3600, concurrency=1))
        store, _ = StateStore.open(settings.state.path)
        try:
            async with CmdbClient(settings.cmdb, watch_slots=1) as client:
                engine = Reconciler(settings, client, store)
                watcher = Watcher(settings, engine)
                with capture_logs() as logs:
                    async with watcher.running():
                        await _until(lambda: watcher.objects["bk_switch"].state == "watching")
                        report = await engine.cycle()
                        assert report.total("created") == len(DESIRED)
                        events = watcher.objects["bk_switch"].events
                        await _until(lambda: events["create"] >= len(DESIRED))
                        async with CmdbClient(settings.cmdb) as other:
                            await other.batch_create("bk_switch", "host", ASST, [(9, 1099)])
                        await _until(lambda: any(_created(logs)))
                        await asyncio.sleep(2 * GRACE)
        finally:
            store.close()
    assert [(line["bk_inst_id"], line["bk_asst_inst_id"]) for line in _created(logs)] == [(9, 1099)]


def _created(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in logs if line["event"] == "drift" and line["change"] == "created"]
