"""A pair held by a blocker is released when the watch sees the blocker deleted by someone
else: no cycle, no signal (issue: holds end when their cause ends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import Settings
from syncd.engine.reconcile import Reconciler
from syncd.informer.watch import Watcher
from syncd.state import StateStore
from tests.helpers import ASST, capture_logs, fixture_dict, load, write_config, write_csv

WAIT = 30.0


@asynccontextmanager
async def _daemon_like(settings: Settings) -> AsyncIterator[tuple[Reconciler, Watcher]]:
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
    async with asyncio.timeout(WAIT):
        while not what():  # noqa: ASYNC110 (state changes in another task)
            await asyncio.sleep(0.05)


async def test_a_foreign_blocker_deleted_by_someone_releases_the_held_pair(
    tmp_path: Path,
) -> None:
    doc = fixture_dict(switches=4, hosts=5, mapping="1:n", existing=[(1, 1001)])
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions(watch_timeout_s=1.0))
    async with sim.running(host="127.0.0.1", port=0) as url:
        desired = [(2, 1001), (2, 1002)]
        settings = load(
            write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired), interval=3600)
        )
        with capture_logs() as logs:
            async with _daemon_like(settings) as (engine, _):
                report = await engine.cycle()
                assert report.relations[0].held == 1
                assert sim.pairs(ASST) == {(1, 1001), (2, 1002)}
                cycles = engine.cycles
                sim.delete_pairs(ASST, [(1, 1001)])  # someone else removes the old cable
                await _until(lambda: (2, 1001) in sim.pairs(ASST))
                assert engine.cycles == cycles  # the watch ran the relation, no cycle
        assert sim.pairs(ASST) == set(desired)
        drift = [line for line in logs if line.get("event") == "drift"]
        assert [(d["bk_inst_id"], d["bk_asst_inst_id"], d["action"]) for d in drift] == [
            (1, 1001, "release")
        ]
