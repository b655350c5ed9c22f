"""Guards only a person lifts: a resync the watch or an unauthenticated caller asks for
relists the CMDB but keeps the shrink and empty-source guards; the operator's lifts them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cmdb_simulator import Simulator
from syncd.engine.report import CycleReport
from tests.engine.test_pruning import OURS, Rig
from tests.helpers import ASST, capture_logs, engine_for, write_csv


async def resync_cycle(rig: Rig, rows: list[tuple[int, int]], **kw: bool) -> CycleReport:
    write_csv(rig.topo, rows)
    async with engine_for(rig.settings, clock=rig.clock) as engine:
        with capture_logs() as logs:
            report = await engine.cycle(resync=True, **kw)
    rig.logs.extend(logs)
    return report


async def test_only_the_operators_resync_lifts_the_shrink_guard(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1, max_shrink=0.5)
        await rig.cycle(OURS)
        small = OURS[:2]
        r = await rig.cycle(small)
        assert "shrank from 6 to 2" in (r.relations[0].prune_blocked or "")
        # A plain resync (POST /resync without the token) relists, and keeps the guard.
        r = await resync_cycle(rig, small, lift_guards=False)
        assert r.relations[0].resynced and r.total("deleted") == 0
        assert "shrank from 6 to 2" in (r.relations[0].prune_blocked or "")
        # So does a relist the watch asks for (a gap, the relist interval).
        async with engine_for(rig.settings, clock=rig.clock) as engine:
            rep = await engine.run_now(rig.settings.relations[0], resync=True)
        assert rep.resynced and rep.deleted == 0 and rep.prune_blocked
        assert sim.pairs(ASST) == set(OURS)
        # The operator's (SIGHUP, or the endpoint with the token) accepts the new size.
        r = await resync_cycle(rig, small, lift_guards=True)
        await rig.cycle(small)
        assert rig.deleted() == set(OURS[2:]) and sim.pairs(ASST) == set(small)


async def test_only_the_operators_resync_accepts_an_emptied_source(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        rig.settings.sync.empty_source_guard = 2
        await rig.cycle(OURS)
        r = await resync_cycle(rig, [], lift_guards=False)
        assert r.relations[0].error and r.total("deleted") == 0
        async with engine_for(rig.settings, clock=rig.clock) as engine:
            rep = await engine.run_now(rig.settings.relations[0], resync=True)
        assert rep.error and rep.deleted == 0
        assert sim.pairs(ASST) == set(OURS)
        r = await resync_cycle(rig, [], lift_guards=True)
        assert r.relations[0].error is None
