"""The reconciler's structure: error boundary per relation, the send seam, stop, log context."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.config.settings import RelationSettings
from syncd.core.outcome import BatchOutcome
from syncd.engine.desired import make_source
from syncd.engine.report import RelationReport, marked
from syncd.engine.sendstep import Details, send_batch
from syncd.runtime.metrics import Metrics
from syncd.sources.base import Source
from tests.helpers import (
    ASST,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    pair_lines,
    run_cycle,
    write_config,
    write_csv,
)

PRUNE = "prune = { enabled = true }"
OTHER = "bk_switch_uplink_host"
SECOND = """
[[relations]]
name = "boom"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{asst}"
source = {{ type = "file", path = "{path}" }}
"""


def exploding(rel: RelationSettings, index: int = 0) -> Source:
    if rel.name == "boom":
        raise RuntimeError("a bug in a source")
    return make_source(rel, index)


async def test_one_relations_bug_fails_only_that_relation(tmp_path: Path) -> None:
    doc = fixture_dict(switches=2, hosts=5)
    doc["model_associations"].append({**doc["model_associations"][0], "bk_obj_asst_id": OTHER})
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions())
    desired = [(1, 1001), (2, 1002)]
    topology = write_csv(tmp_path / "t.csv", desired)
    async with sim.running(host="127.0.0.1", port=0) as url:
        extra = SECOND.format(asst=OTHER, path=topology)
        settings = load(write_config(tmp_path, url, topology, extra=extra))
        async with engine_for(settings, source_factory=exploding) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
    good, bad = report.relations
    assert good.error is None and good.created == 2 and good.converged
    assert bad.error is not None and "RuntimeError" in bad.error and "a bug" in bad.error
    assert sim.pairs(ASST) == set(desired)
    failed = [l for l in logs if l["event"] == "relation_failed"]
    assert len(failed) == 1
    assert failed[0]["relation"] == "boom" and "RuntimeError" in failed[0]["traceback"]
    relation_lines = {l["relation"]: l for l in logs if l["event"] == "relation"}
    assert relation_lines["boom"]["error"] == bad.error
    assert relation_lines["boom"]["bk_obj_asst_id"] == OTHER
    assert all(l["cycle"] == 1 for l in relation_lines.values())


async def test_every_batch_goes_through_the_send_seam(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=3, hosts=100)
    desired = [(s, 1000 + h) for s in (1, 2, 3) for h in range(1, 101)]
    seen: list[Details] = []

    async def spy(client: CmdbClient, rel: RelationSettings, details: Details) -> BatchOutcome:
        seen.append(details)
        return await send_batch(client, rel, details)

    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired)))
        async with engine_for(settings, send=spy) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
    assert sorted(d for batch in seen for d in batch) == sorted(desired)
    assert len(seen) == 2 and report.total("created") == 300
    pairs = pair_lines(logs)
    assert len(pairs) == 300
    assert {p["operation"] for p in pairs} == {"create"}
    assert {p["batch"] for p in pairs} == {1, 2}


async def test_stopped_reconciler_starts_no_request(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    # The CMDB holds more pairs than the source has: "known >= desired" would say converged.
    sim = sim_factory(switches=2, hosts=5, existing=[(1, 1003), (1, 1004), (2, 1005)])
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)])
        settings = load(write_config(tmp_path, url, topology))
        async with engine_for(settings) as engine:
            engine.stop()
            with capture_logs() as logs:
                report = await engine.cycle()
    assert sim.pairs(ASST) == {(1, 1003), (1, 1004), (2, 1005)}
    assert pair_lines(logs) == []
    (rel,) = report.relations
    assert rel.sent == 0 and rel.known == 3 and rel.desired == 2
    assert rel.pending == 2 and not report.converged


async def test_refusals_are_one_line_with_a_fix_whichever_way(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=2, hosts=5)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", [(1, 1001)])
        cfg = write_config(tmp_path, url, topology)
        # The model association is missing: found while observing.
        missing = load(cfg)
        missing.relations[0].bk_obj_asst_id = "bk_switch_nope_host"
        # The credentials are refused: the resync's read is refused.
        denied_cfg = cfg.with_name("denied.toml")
        denied_cfg.write_text(cfg.read_text().replace('"s3cret-app"', '"wrong"'))
        denied = load(denied_cfg)
        for settings, words in ((missing, "does not exist"), (denied, "credentials")):
            metrics = Metrics(process_metrics=False)
            async with engine_for(settings, observer=metrics) as engine:
                with capture_logs() as logs:
                    report = await engine.cycle()
            refused = [l for l in logs if l["event"] == "relation_refused"]
            assert len(refused) == 1, logs
            assert refused[0]["fix"] and refused[0]["relation"] == "switch-host"
            assert words in refused[0]["error"] + refused[0]["fix"]
            assert not [l for l in logs if l["event"] == "relation_failed"]
            assert report.relations[0].error and not report.ok
            failed = metrics.registry.get_sample_value("syncd_cycles_total", {"result": "failed"})
            assert failed == 1.0
    assert sim.pairs(ASST) == set()


async def test_failed_source_line_reports_known_and_why_no_prune(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=2, hosts=5)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)])
        settings = load(write_config(tmp_path, url, topology, extra=PRUNE))
        await run_cycle(settings)
        topology.unlink()
        report, logs = await run_cycle(settings)  # a fresh engine: nothing in memory
    (line,) = [l for l in logs if l["event"] == "relation"]
    assert line["error"] and line["known"] == 2 == report.relations[0].known
    assert line["prune_blocked"] == "the source failed this cycle"
    assert line["phases"] == {}  # a failed read reaches no step
    (blocked,) = [l for l in logs if l["event"] == "prune_blocked"]
    assert blocked["relation"] == "switch-host" and blocked["bk_obj_asst_id"] == ASST


async def test_source_counts_reach_the_relation_line(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=2, hosts=5)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002), (2, 1003)])
        extra = '[relations.filters]\nexclude_source = ["2"]'
        settings = load(write_config(tmp_path, url, topology, extra=extra))
        report, logs = await run_cycle(settings)
    (line,) = [l for l in logs if l["event"] == "relation"]
    assert line["source_counts"] == {"filtered": 2} == report.relations[0].source_counts
    assert sim.pairs(ASST) == {(1, 1001)}


PHASES = ["read", "observed", "planned", "sending", "sent"]


async def test_relation_line_times_each_phase_in_order(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=3, hosts=100)
    desired = [(s, 1000 + h) for s in (1, 2, 3) for h in range(1, 101)]
    async with sim.running(host="127.0.0.1", port=0) as url:
        topology = write_csv(tmp_path / "t.csv", desired)
        settings = load(write_config(tmp_path, url, topology))
        first, logs = await run_cycle(settings)
        again, quiet = await run_cycle(settings)
    (line,) = [l for l in logs if l["event"] == "relation"]
    phases = line["phases"]
    assert list(phases) == PHASES, phases
    times = [phases[p] for p in PHASES]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= line["duration"]
    assert phases == first.relations[0].phases and "started" not in line
    # Nothing left to send: the cycle stops at the plan, and says so.
    (line,) = [l for l in quiet if l["event"] == "relation"]
    assert list(line["phases"]) == ["read", "observed", "planned"]
    assert again.relations[0].sent == 0


async def test_a_step_beside_another_is_marked_when_it_ends() -> None:
    report = RelationReport("r")
    read = marked(asyncio.sleep(0.01, "pairs"), report, "read")
    got, _ = await asyncio.gather(read, asyncio.sleep(0.2))
    report.mark("observed")
    assert got == "pairs"
    assert report.phases["read"] < 0.15 <= report.phases["observed"]
    report.mark("sending", first=True)
    before = report.phases["sending"]
    await asyncio.sleep(0.02)
    report.mark("sending", first=True)
    assert report.phases["sending"] == before
