"""Never prune on uncertainty, against the simulator: the issue's scenario end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmdb_simulator import Simulator
from syncd.commands.planview import plan_document, render_text
from syncd.engine.report import CycleReport
from tests.helpers import ASST, capture_logs, engine_for, load, pair_lines, write_config

PRUNE = (
    'source_key = "bk_inst_name"\ntarget_key = "bk_host_name"\n'
    "\n[relations.prune]\nenabled = true\ngrace_seconds = 0\ngrace_cycles = 1\n"
    "max_fraction = 1.0\n"
)
# 10 switches x 3 hosts: bk_switch-N -> host-(1000 + 3(N-1) + k)
CABLES = [(s, 1000 + 3 * (s - 1) + k) for s in range(1, 11) for k in (1, 2, 3)]


def rows(rename: dict[str, str], drop: set[tuple[int, int]]) -> str:
    out = ["switch,host"]
    for s, h in CABLES:
        if (s, h) in drop:
            continue
        sw, host = f"bk_switch-{s}", f"host-{h}"
        out.append(f"{rename.get(sw, sw)},{rename.get(host, host)}")
    return "\n".join(out) + "\n"


class Rig:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.topo = tmp_path / "t.csv"
        self.topo.write_text(rows({}, set()))
        cfg = write_config(tmp_path, url, self.topo, extra=PRUNE)
        cfg.write_text(
            cfg.read_text().replace(
                f'path = "{self.topo}" }}',
                f'path = "{self.topo}", source_field = "switch", target_field = "host" }}',
            )
        )
        self.settings = load(cfg)
        self.logs: list[dict[str, Any]] = []

    async def cycle(self) -> CycleReport:
        async with engine_for(self.settings) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        self.logs.extend(logs)
        return report


RENAMED = {"bk_switch-1": "bk_switch-1-renamed", "host-1004": "host-1004-new"}
DROPPED = (5, 1013)


async def test_renamed_keys_keep_their_pairs_the_dropped_cable_goes(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=10, hosts=30, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle()
        assert sim.pairs(ASST) == set(CABLES)
        rig.topo.write_text(rows(RENAMED, {DROPPED}))
        for _ in range(3):  # any number of cycles
            report = await rig.cycle()
        kept = {(1, 1001), (1, 1002), (1, 1003), (2, 1004)}
        assert sim.pairs(ASST) == set(CABLES) - {DROPPED}
        deleted = [p for p in pair_lines(rig.logs) if p["outcome"] == "deleted"]
        assert [(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in deleted] == [DROPPED]
        rel = report.relations[0]
        assert rel.kept_uncertain == len(kept) and rel.deleted == 0 and rel.moved == 0
        assert report.summary()["kept_uncertain"] == len(kept)
        # The log says why each was kept, naming the unresolved key.
        line = [e for e in rig.logs if e["event"] == "prune_kept"][-1]
        why = {(k["bk_inst_id"], k["bk_asst_inst_id"]): k["key"] for k in line["kept"]}
        assert set(why) == kept
        assert "'bk_switch-1-renamed'" in why[(1, 1001)] and "'host-1004-new'" in why[(2, 1004)]

        # The plan lists them too, each with its key.
        async with engine_for(rig.settings) as engine:
            plan = await engine.plan_relation(rig.settings.relations[0])
        doc = plan_document(rig.settings, [plan], {})
        listed = doc["relations"][0]["kept"]
        assert {(k["bk_inst_id"], k["bk_asst_inst_id"]) for k in listed} == kept
        assert doc["relations"][0]["counts"]["kept_uncertain"] == len(kept)
        assert "kept: source key 'bk_switch-1-renamed'" in render_text(doc)

        # The CMDB catches up: the same pairs resolve again; nothing deleted or re-created.
        sim.add_instances("bk_switch", [{"bk_inst_id": 1, "bk_inst_name": "bk_switch-1-renamed"}])
        sim.add_instances("host", [{"bk_host_id": 1004, "bk_host_name": "host-1004-new"}])
        rig.logs.clear()
        after = await rig.cycle()
        rel = after.relations[0]
        assert rel.sent == 0 and rel.deleted == 0 and rel.kept_uncertain == 0
        assert rel.unresolved == 0 and rel.converged
        assert not [p for p in pair_lines(rig.logs) if p["outcome"] in ("deleted", "created")]
        assert sim.pairs(ASST) == set(CABLES) - {DROPPED}


async def test_both_keys_unresolved_keeps_the_whole_relation(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=10, hosts=30, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle()
        # One fact loses both names; another cable is dropped for real: nothing can be
        # ruled out, so nothing is pruned while the fact stays unresolved.
        rig.topo.write_text(
            rows({"bk_switch-9": "ghost-sw"}, {DROPPED}).replace("ghost-sw,host-1025", "x,y")
        )
        report = await rig.cycle()
        assert sim.pairs(ASST) == set(CABLES)
        assert report.relations[0].kept_uncertain >= 1
        line = [e for e in rig.logs if e["event"] == "prune_kept"][-1]
        assert any("could be any pair" in k["key"] for k in line["kept"])


async def test_an_unresolved_side_never_moves(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=10, hosts=30, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle()
        # host-1004 is named by a renamed switch (unresolved) and, by a typo elsewhere, by
        # bk_switch-3: the unresolved fact may still mean 2 -> 1004, so it is not replaced.
        text = rows({"bk_switch-2": "bk_switch-2-renamed"}, set()) + "bk_switch-3,host-1004\n"
        rig.topo.write_text(text)
        report = await rig.cycle()
        assert (2, 1004) in sim.pairs(ASST) and (3, 1004) not in sim.pairs(ASST)
        rel = report.relations[0]
        assert rel.moved == 0 and rel.deleted == 0
        held = [p for p in pair_lines(rig.logs) if p["outcome"] == "held"]
        assert [(h["bk_inst_id"], h["bk_asst_inst_id"], h["reason"]) for h in held] == [
            (3, 1004, "uncertain_blocker")
        ]


async def test_a_single_pair_delete_path_asks_the_same_rule(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    from syncd.core.pairs import pack

    sim = sim_factory(switches=10, hosts=30, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        async with engine_for(rig.settings) as engine:
            assert not engine.may_delete("switch-host", pack(5, 1013))  # nothing read yet
            rig.topo.write_text(rows(RENAMED, {DROPPED}))
            await engine.cycle()
            assert engine.may_delete("switch-host", pack(*DROPPED))
            assert not engine.may_delete("switch-host", pack(1, 1002))  # its switch is renamed
            assert not engine.may_delete("switch-host", pack(2, 1004))  # its host is readdressed
            assert not engine.may_delete("switch-host", pack(2, 1005))  # still stated
