"""Ownership that cannot be claimed by accident: a pair another client created is never
owned, so never pruned, whatever syncd's first answer or an old in-flight row says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cmdb_simulator import Simulator
from syncd.cmdb.client import CmdbClient
from syncd.core.pairs import pack
from syncd.state import StateStore
from tests.engine.test_pruning import OURS, Rig
from tests.helpers import ASST, engine_for, pair_lines

FOREIGN = (4, 1005)


async def foreign_create(rig: Rig, pair: tuple[int, int]) -> None:
    """Another client of the same CMDB creates ``pair`` (a real request over loopback)."""
    rel = rig.settings.relations[0]
    async with CmdbClient(rig.settings.cmdb) as other:
        answer = await other.batch_create(
            rel.bk_obj_id, rel.bk_asst_obj_id, rel.bk_obj_asst_id, [pair]
        )
    assert "0" in (answer.data or {}).get("success_created", {})


async def test_a_first_attempt_exists_is_not_owned_nor_pruned(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        await foreign_create(rig, FOREIGN)
        await rig.cycle([*OURS, FOREIGN])  # syncd sends it once: "already exists"
        answers = [p["outcome"] for p in pair_lines(rig.logs) if p["bk_inst_id"] == 4]
        assert answers == ["exists"]
        with StateStore.open_readonly(rig.settings.state.path) as st:
            assert pack(*FOREIGN) not in st.owned_keys(rig.settings.relations[0].name)
        for _ in range(2):
            await rig.cycle(OURS, advance=60)  # the source drops it
        assert FOREIGN in sim.pairs(ASST)
        assert FOREIGN not in rig.deleted()


async def test_a_stale_in_flight_row_and_a_relist_do_not_own_a_foreign_pair(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        name = rig.settings.relations[0].name
        # A create of FOREIGN left in flight three days ago (that process was killed).
        st, _ = StateStore.open(rig.settings.state.path)
        st.attempts.intend(name, [FOREIGN], now=rig.clock.now - 3 * 86400)
        st.close()
        await foreign_create(rig, FOREIGN)
        async with engine_for(rig.settings, clock=rig.clock) as engine:
            await engine.cycle(resync=True)  # a relist (SIGHUP, or a watch gap)
        with StateStore.open_readonly(rig.settings.state.path) as st:
            assert pack(*FOREIGN) in st.known_keys(name)
            assert pack(*FOREIGN) not in st.owned_keys(name)
            assert st.attempts.in_flight(name) == set()  # the relist settled the old attempt
        await rig.cycle([*OURS, FOREIGN])
        for _ in range(2):
            await rig.cycle(OURS, advance=60)
        assert FOREIGN in sim.pairs(ASST) and FOREIGN not in rig.deleted()


async def test_a_recent_killed_attempt_makes_its_exists_owned(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    """The other side of the rule: syncd's create whose answer a kill lost is still its own."""
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        name = rig.settings.relations[0].name
        st, _ = StateStore.open(rig.settings.state.path)
        st.attempts.intend(name, [FOREIGN], now=rig.clock.now)  # sent, then killed mid-request ...
        st.close()
        await foreign_create(rig, FOREIGN)  # ... after the CMDB acted (same request, here)
        await rig.cycle([*OURS, FOREIGN], advance=5)  # the retry: "already exists"
        with StateStore.open_readonly(rig.settings.state.path) as st:
            assert pack(*FOREIGN) in st.owned_keys(name)
            assert st.attempts.in_flight(name) == set()
        for _ in range(2):
            await rig.cycle(OURS, advance=60)
        assert FOREIGN in rig.deleted() and FOREIGN not in sim.pairs(ASST)
