"""NetBox-shaped data through key resolution into the simulator, by the engine (issue 5)."""

from __future__ import annotations

import sys
from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from tests.helpers import ASST, capture_logs, engine_for, load, pair_lines, write_config, write_csv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sources"))
from src_helpers import replay_netbox
from test_src_resolver import cmdb_fixture


async def test_netbox_cables_by_name_sync_end_to_end(tmp_path: Path) -> None:
    sim = Simulator(Fixture.from_dict(cmdb_fixture()), SimulatorOptions())
    async with replay_netbox("cables_dc1") as nb, sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(tmp_path, url, write_csv(tmp_path / "unused.csv", []))
        text = cfg.read_text().replace(
            f'source = {{ type = "file", path = "{tmp_path / "unused.csv"}" }}',
            f'source = {{ type = "netbox", url = "{nb.url}", token = "{"t" * 40}", '
            'mode = "cables", site = ["dc1"], page_size = 4 }\n'
            'source_key = "bk_inst_name"\ntarget_key = "bk_host_name"',
        )
        cfg.write_text(text)
        settings = load(cfg)
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
                again = await engine.cycle()
    expected = {(1, 1001), (1, 1002), (2, 1002), (2, 1003), (3, 1004), (3, 1005), (3, 1003)}
    assert sim.pairs(ASST) == expected
    rel = report.relations[0]
    assert rel.created == 7 and rel.unresolved == 1 and not rel.converged
    unresolved = [p for p in pair_lines(logs) if p["outcome"] == "unresolved"]
    # Logged once per cycle, with the fact's origin, and retried (still unresolved) next cycle.
    assert [u["key"] for u in unresolved] == ["srv-06", "srv-06"]
    assert unresolved[0]["side"] == "target" and unresolved[0]["origin"]
    assert again.relations[0].sent == 0


async def test_unchanged_file_is_not_reread(tmp_path: Path) -> None:
    from tests.helpers import fixture_dict

    sim = Simulator(Fixture.from_dict(fixture_dict(switches=2, hosts=3)), SimulatorOptions())
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = tmp_path / "t.csv"
        topo.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\nxx,1002\n")
        settings = load(write_config(tmp_path, url, topo))
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                await engine.cycle()
                second = await engine.cycle()
                topo.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n2,1002\n")
                third = await engine.cycle()
    bad = [line for line in logs if line["event"] == "bad_record"]
    assert len(bad) == 1  # the unchanged file was not parsed (nor complained about) again
    assert second.relations[0].bad_records == 1 and second.relations[0].sent == 0
    assert third.relations[0].created == 1
    assert sim.pairs(ASST) == {(1, 1001), (2, 1002)}
