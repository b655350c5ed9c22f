"""State keyed by what it describes: a relation's state belongs to its three ids, not its
name. A change of ids under one name, a rename and a removal, against the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmdb_simulator import Fixture, Simulator
from syncd.state import Identity, StateStore
from tests.engine.test_pruning import OURS, Rig
from tests.helpers import (
    ASST,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    run_syncd,
    write_csv,
)

UPLINK = "bk_switch_uplink_host"


def two_associations(**kw: Any) -> Simulator:
    doc = fixture_dict(switches=4, hosts=6, **kw)
    doc["model_associations"].append({**doc["model_associations"][0], "bk_obj_asst_id": UPLINK})
    return Simulator(Fixture.from_dict(doc))


def reconfigure(rig: Rig, old: str, new: str) -> None:
    """Edit the relation in the config file and load it again."""
    cfg = rig.topo.parent / "syncd.toml"
    cfg.write_text(cfg.read_text().replace(old, new))
    rig.settings = load(cfg)


async def test_changed_association_id_resyncs_and_prunes_nothing_from_the_old(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = two_associations()
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        assert sim.pairs(ASST) == set(OURS)
        # Same name, another association; and one pair dropped from the source.
        reconfigure(rig, f'bk_obj_asst_id = "{ASST}"', f'bk_obj_asst_id = "{UPLINK}"')
        report = await rig.cycle(OURS[1:])
        changed = [line for line in rig.logs if line["event"] == "relation_changed"]
        assert len(changed) == 1
        assert changed[0]["was"]["bk_obj_asst_id"] == ASST
        assert changed[0]["now"]["bk_obj_asst_id"] == UPLINK
        assert report.relations[0].resynced and report.total("deleted") == 0
        assert sim.pairs(UPLINK) == set(OURS[1:])  # the new association is filled
        assert sim.pairs(ASST) == set(OURS)  # nothing pruned from the old one
        for _ in range(2):
            report = await rig.cycle(OURS[1:], advance=60)
            assert report.total("deleted") == 0
        assert sim.pairs(ASST) == set(OURS)
        with StateStore.open_readonly(rig.settings.state.path) as st:
            ids = st.meta.stored_identities()
        assert ids["switch-host"] == Identity("bk_switch", "host", UPLINK)
        assert ids[f"switch-host@{ASST}"] == Identity("bk_switch", "host", ASST)
        # The old state is reported at each start as orphaned, with its owned pairs.
        orphaned = [line for line in rig.logs if line["event"] == "orphaned_state"]
        assert orphaned and orphaned[-1]["owned"] == len(OURS)
        # Back to the old association: its state (and ownership) comes back.
        reconfigure(rig, f'bk_obj_asst_id = "{UPLINK}"', f'bk_obj_asst_id = "{ASST}"')
        await rig.cycle(OURS[1:], advance=60)
        await rig.cycle(OURS[1:], advance=60)
        assert rig.deleted() >= {OURS[0]} and sim.pairs(ASST) == set(OURS[1:])


async def test_a_renamed_relation_keeps_its_owned_pairs(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        reconfigure(rig, 'name = "switch-host"', 'name = "uplinks"')
        await rig.cycle(OURS)
        assert [line["was"] for line in rig.logs if line["event"] == "relation_renamed"] == [
            "switch-host"
        ]
        assert not [line for line in rig.logs if line["event"] == "orphaned_state"]
        await rig.cycle(OURS[1:], advance=60)
        await rig.cycle(OURS[1:], advance=60)
        assert OURS[0] in rig.deleted()  # still owned under the new name: pruned


async def test_a_removed_relation_is_reported_and_never_pruned(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        # Another relation now, the old one removed (other ids: not a rename).
        reconfigure(rig, 'name = "switch-host"', 'name = "other"')
        with StateStore.open(rig.settings.state.path)[0] as st:
            st.meta.set_relation_identity("switch-host", Identity("bk_switch", "host", "old_asst"))
        with capture_logs() as logs:
            async with engine_for(rig.settings, clock=rig.clock) as engine:
                await engine.cycle()
        orphaned = [line for line in logs if line["event"] == "orphaned_state"]
        assert [(o["relation"], o["owned"], o["known"]) for o in orphaned] == [
            ("switch-host", len(OURS), len(OURS))
        ]
        assert sim.pairs(ASST) == set(OURS)


async def syncd_plan(cfg: Path) -> tuple[int, dict[str, Any]]:
    """``syncd plan --json`` through ``syncd.cli.main`` in a thread (this loop serves the
    simulator); a plan installs no signal handler."""
    ran = await asyncio.wait_for(
        asyncio.to_thread(run_syncd, "plan", "--json", "--config", str(cfg)), 60
    )
    return ran.code, json.loads(ran.stdout)


async def test_plan_shows_a_changed_relation_and_orphaned_state(tmp_path: Path) -> None:
    sim = two_associations()
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1)
        await rig.cycle(OURS)
        reconfigure(rig, f'bk_obj_asst_id = "{ASST}"', f'bk_obj_asst_id = "{UPLINK}"')
        write_csv(rig.topo, OURS[1:])
        before = rig.settings.state.path.read_bytes()
        status, doc = await syncd_plan(tmp_path / "syncd.toml")
        assert rig.settings.state.path.read_bytes() == before  # a plan writes nothing
        (rel,) = doc["relations"]
        assert status == 2 and rel["state_set_aside_as"] == f"switch-host@{ASST}"
        assert rel["counts"]["create"] == len(OURS) - 1 and rel["delete"] == []
        assert doc["orphans"] == [
            {
                "relation": f"switch-host@{ASST}",
                "bk_obj_id": "bk_switch",
                "bk_asst_obj_id": "host",
                "bk_obj_asst_id": ASST,
                "known": len(OURS),
                "owned": len(OURS),
            }
        ]
