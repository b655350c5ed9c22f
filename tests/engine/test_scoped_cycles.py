"""A push runs a cycle of the relations it concerns; the interval and SIGHUP run all.

The daemon coalesces requests made before a cycle starts; after a partial cycle its
last report (readiness, status) still remembers how the other relations last did.
"""

from __future__ import annotations

from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.engine.report import CycleReport, RelationReport
from syncd.runtime.daemon import Daemon
from tests.helpers import (
    ASST,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    write_config,
    write_csv,
)

OTHER = "bk_switch_uplink_host"
SECOND = """
[[relations]]
name = "lab"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{asst}"
source = {{ type = "file", path = "{path}" }}
"""


def two_relations(tmp_path: Path, url: str) -> Path:
    main = write_csv(tmp_path / "main.csv", [(1, 1001)])
    lab = write_csv(tmp_path / "lab.csv", [(2, 1002)])
    return write_config(tmp_path, url, main, extra=SECOND.format(asst=OTHER, path=lab))


async def test_a_cycle_of_some_relations_runs_only_those(tmp_path: Path) -> None:
    doc = fixture_dict(switches=2, hosts=5)
    doc["model_associations"].append({**doc["model_associations"][0], "bk_obj_asst_id": OTHER})
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions())
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(two_relations(tmp_path, url))
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                partial = await engine.cycle(only={"lab"})
                assert sim.pairs(ASST) == set() and sim.pairs(OTHER) == {(2, 1002)}
                full = await engine.cycle()
                resync = await engine.cycle(resync=True, only={"lab"})
    assert partial.partial and [r.relation for r in partial.relations] == ["lab"]
    assert not full.partial and [r.relation for r in full.relations] == ["switch-host", "lab"]
    assert not resync.partial and len(resync.relations) == 2  # a resync covers every one
    cycles = [l for l in logs if l["event"] == "cycle"]
    assert [c.get("only") for c in cycles] == [["lab"], None, None]
    assert sim.pairs(ASST) == {(1, 1001)}


def test_requests_coalesce_and_a_full_request_wins(tmp_path: Path) -> None:
    daemon = Daemon(load(two_relations(tmp_path, "http://127.0.0.1:9")))
    daemon.request_cycle("netbox webhook", ["switch-host"])
    daemon.request_cycle("lab: 2 change(s) from lldpcli", ["lab"])
    daemon.request_cycle("netbox webhook", ["switch-host"])
    assert daemon._take_scope(full=False) == {"switch-host", "lab"}
    assert daemon._take_scope(full=False) is None  # nothing pending: a full cycle
    daemon.request_cycle("lab changed", ["lab"])
    assert daemon._take_scope(full=True) is None  # the interval is due: everything
    assert daemon._take_scope(full=False) is None  # and the request was served by it
    daemon.request_cycle("lab changed", ["lab"])
    daemon.request_cycle("everything")
    assert daemon._take_scope(full=False) is None


def test_after_a_partial_cycle_the_report_remembers_the_others() -> None:
    full = CycleReport(
        [RelationReport("a", error="source failed"), RelationReport("b", created=2)], 1.0
    )
    partial = CycleReport([RelationReport("b", created=1)], 0.2, partial=True)
    merged = full.updated_by(partial)
    assert [r.relation for r in merged.relations] == ["a", "b"]
    assert not merged.ok  # a still failed last time it ran
    assert merged.total("created") == 1 and merged.duration == 0.2
