"""Storm brakes of the watch: a CMDB answering 1103007 to every watch call costs at most
one watch request a second per object and a relist now and then, counted server-side."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.engine.reconcile import Reconciler
from syncd.informer.stream import WatchTimings
from syncd.informer.watch import Watcher
from syncd.state import StateStore
from tests.helpers import capture_logs, fixture_dict, load, write_config, write_csv

DESIRED = [(s, 1000 + h) for s in range(1, 3) for h in range(1, 11)]
WINDOW = 4.0
TIMINGS = WatchTimings()  # the defaults: the brakes as shipped


async def test_every_watch_call_expired_is_paced_and_relists_are_braked(tmp_path: Path) -> None:
    sim = Simulator(
        Fixture.from_dict(fixture_dict(switches=4, hosts=20)),
        SimulatorOptions(watch_timeout_s=1.0, fault_rate=1.0, fault_kinds=("watch-expired",)),
    )
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", DESIRED)
        settings = load(write_config(tmp_path, url, topology, interval=3600))
        store, _ = StateStore.open(settings.state.path)
        try:
            async with CmdbClient(settings.cmdb, watch_slots=1) as client:
                engine = Reconciler(settings, client, store)
                watcher = Watcher(settings, engine)
                with capture_logs() as logs:
                    async with watcher.running():
                        assert (await engine.cycle()).converged
                        before = _watch_calls(sim)
                        await asyncio.sleep(WINDOW)
                        during = _watch_calls(sim) - before
                        expired = sim.stats()["faults"].get("watch-expired", 0)
        finally:
            store.close()
    assert expired >= 2  # the fault answered the watch, again and again
    # One watched object: at most one watch request a second (+1 for the window's edges).
    assert 1 <= during <= WINDOW + 1, during
    # The first expiry relists at once; the next waits relist_floor (longer than the window).
    assert TIMINGS.relist_floor > WINDOW
    assert 1 <= watcher.relists["expired"] <= 2, watcher.relists
    restarts = [line for line in logs if line.get("event") == "watch_restarting"]
    assert restarts and restarts[-1]["restart_in"] >= TIMINGS.relist_floor


def _watch_calls(sim: Simulator) -> int:
    return int(sim.stats()["requests_by_api"].get("resource_watch", 0))


def test_the_restart_pause_doubles_from_the_floor_to_the_cap() -> None:
    pauses = [TIMINGS.restart_pause(n) for n in range(12)]
    assert pauses[0] == 0.0
    assert pauses[1] == TIMINGS.relist_floor and pauses[2] == 2 * TIMINGS.relist_floor
    assert pauses == sorted(pauses) and pauses[-1] == TIMINGS.relist_cap
