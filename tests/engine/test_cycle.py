"""The engine against the simulator over real HTTP on loopback (issue 3)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from cmdb_simulator import Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.core.pairs import pack
from syncd.state import StateStore
from tests.helpers import (
    ASST,
    capture_logs,
    engine_for,
    load,
    pair_lines,
    run_cycle,
    write_config,
    write_csv,
)

NO_PRECHECK = 'host_precheck = "off"'
"""React to the CMDB's refusals instead of confirming hosts first."""


def all_pairs(switches: int, hosts: int) -> list[tuple[int, int]]:
    return [(s, 1000 + h) for s in range(1, switches + 1) for h in range(1, hosts + 1)]


async def test_first_cycle_creates_exactly_the_missing_pairs(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    desired = all_pairs(5, 130)  # 650 pairs -> 4 requests of <= 200
    existing = desired[:30]
    sim = sim_factory(existing=existing, switches=5, hosts=130)
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired)))
        report, logs = await run_cycle(settings)
        assert sim.pairs(ASST) == set(desired)
        stats = sim.stats()
        assert stats["max_batch"] <= 200
        assert stats["details_received"] == len(desired) - len(existing)
        pairs = pair_lines(logs)
        assert len(pairs) == len(desired) - len(existing)
        assert Counter(p["outcome"] for p in pairs) == {"created": 620}
        assert report.total("created") == 620 and report.converged
        # The first cycle with an empty state read the CMDB: the 30 existing pairs were not sent.
        sent = {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pairs}
        assert not sent & set(existing)
        for p in pairs:
            assert p["relation"] == "switch-host" and p["bk_obj_asst_id"] == ASST
            assert isinstance(p["association_id"], int) and p["request_id"]
            assert 0 <= p["index"] < 200
        # Batch ids are unique per request and indexes are unique within a batch.
        per_batch = Counter((p["batch"], p["index"]) for p in pairs)
        assert max(per_batch.values()) == 1

        # Second cycle: nothing to do, nothing sent.
        before = sim.stats()["details_received"]
        report2, logs2 = await run_cycle(settings)
        assert sim.stats()["details_received"] == before
        assert pair_lines(logs2) == []
        assert report2.total("desired") == 650 and report2.total("known") == 650


async def test_restart_sends_nothing_and_resync_recreates_deleted(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    desired = all_pairs(3, 50)
    sim = sim_factory(switches=3, hosts=50)
    async with sim.running(host="127.0.0.1", port=0) as url:
        settings = load(write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired)))
        await run_cycle(settings)
        before = sim.stats()["details_received"]
        # A restart (fresh process state, same SQLite file) sends nothing.
        _, logs = await run_cycle(settings)
        assert pair_lines(logs) == [] and sim.stats()["details_received"] == before
        # Someone deletes 7 pairs behind syncd's back; a plain cycle can't know ...
        gone = set(desired[:7])
        assert sim.delete_pairs(ASST, gone) == 7
        _, logs = await run_cycle(settings)
        assert pair_lines(logs) == []
        # ... a resync (SIGHUP) reads the CMDB and re-creates exactly those.
        report, logs = await run_cycle(settings, resync=True)
        assert {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pair_lines(logs)} == gone
        assert sim.pairs(ASST) == set(desired)
        assert report.relations[0].resynced


async def test_restart_after_the_source_changed_sends_exactly_the_new_pairs(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    """After a restart the mirror is built beside the source's pairs in one read of the
    state, and the plan takes the difference found there: exactly the new pairs go out,
    exactly the dropped ones are absent, and the difference is not kept past the plan."""
    before = all_pairs(3, 50)
    sim = sim_factory(switches=3, hosts=60)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", before)
        settings = load(write_config(tmp_path, url, topo))
        await run_cycle(settings)
        dropped = set(before[:10])
        new = [(s, 1000 + h) for s in (1, 2) for h in range(51, 57)]
        write_csv(topo, before[10:] + new)
        async with engine_for(settings) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
            rel = report.relations[0]
            assert {(p["bk_inst_id"], p["bk_asst_inst_id"]) for p in pair_lines(logs)} == set(new)
            assert rel.created == len(new) and rel.absent == len(dropped)
            mirror = engine.known.pairs("switch-host")
            assert mirror == {pack(s, d) for s, d in before + new}
            assert engine.known.take_sides("switch-host") is None  # taken by the plan
        assert sim.pairs(ASST) == set(before + new)


@pytest.mark.parametrize("beside", [True, False], ids=["beside-the-source", "alone"])
async def test_watch_events_during_the_mirrors_load_are_not_lost(
    tmp_path: Path, sim_factory: Callable[..., Simulator], beside: bool
) -> None:
    """A watch event that arrives while a restarted syncd reads its mirror from the state
    is in the mirror afterwards, whether the read had passed its row or not: a pair
    someone deleted is not believed known (it would never be sent again until a resync)."""
    before = all_pairs(3, 50)
    sim = sim_factory(switches=3, hosts=60)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", before)
        settings = load(write_config(tmp_path, url, topo))
        await run_cycle(settings)
        rel = settings.relations[0]
        gone, came = before[0], (3, 1059)
        async with engine_for(settings) as engine:
            known = engine.known

            def event() -> None:
                known.observed(rel.name, created=[(*came, 99_999)], deleted=[pack(*gone)])

            if beside:

                async def source() -> SimpleNamespace:
                    event()  # while the state is read ahead
                    return SimpleNamespace(pairs={pack(s, d) for s, d in before})

                mirror, _, _ = await known.observe_beside(rel, source(), resync=False)
                assert known.take_sides(rel.name) is None  # its difference is stale now
            else:

                async def inject() -> None:
                    for _ in range(100_000):  # the load's thread is still reading
                        if rel.name in known._loading:
                            event()
                            return
                        await asyncio.sleep(0)
                    raise AssertionError("the mirror never started loading")

                (mirror, _), _ = await asyncio.gather(known.observe(rel, resync=False), inject())
            assert pack(*gone) not in mirror and pack(*came) in mirror
            assert mirror == {pack(s, d) for s, d in [*before[1:], came]}


async def test_resync_does_not_resend_pairs_created_by_others(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    desired = all_pairs(2, 40)
    sim = sim_factory(switches=2, hosts=40)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", desired[:40])
        settings = load(write_config(tmp_path, url, topo))
        await run_cycle(settings)
        # Another tool creates the other 40 pairs; then the source grows to include them.
        sim_pairs = desired[40:]
        async with CmdbClient(settings.cmdb) as client:
            answer = await client.batch_create("bk_switch", "host", ASST, sim_pairs)
            assert answer.data["success_created"]
        write_csv(topo, desired)
        before = sim.stats()["details_received"]
        _, logs = await run_cycle(settings, resync=True)
        assert pair_lines(logs) == []
        assert sim.stats()["details_received"] == before


async def test_per_index_failures_and_exists(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    # Auth on (the default): host 9999 is refused for the whole request (1199045), the
    # refusal names it, and the rest of the batch is resent.
    sim = sim_factory(switches=3, hosts=10)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rows = [(1, 1001), (1, 1002), (99, 1001), (2, 9999), (3, 1003)]
        topology = write_csv(tmp_path / "t.csv", rows)
        settings = load(write_config(tmp_path, url, topology, sync_extra=NO_PRECHECK))
        # Somebody else creates (3, 1003) after syncd's resync but before its send.
        async with engine_for(settings) as engine:
            rel = settings.relations[0]
            await engine.known.load_mapping(rel)
            await engine.known.resync(rel)
            await engine.client.batch_create("bk_switch", "host", ASST, [(3, 1003)])
            with capture_logs() as logs:
                report = await engine.cycle()
        outcomes = {(p["bk_inst_id"], p["bk_asst_inst_id"]): p for p in pair_lines(logs)}
        assert outcomes[(1, 1001)]["outcome"] == "created"
        assert outcomes[(3, 1003)]["outcome"] == "exists"
        assert outcomes[(99, 1001)]["outcome"] == "failed"
        assert outcomes[(99, 1001)]["reason"] == "missing_source"
        assert outcomes[(2, 9999)]["reason"] == "missing_target"
        assert "host 9999 has no relations" in outcomes[(2, 9999)]["error"]
        # The stale host's pair under the refused request, the rest under the resend.
        assert outcomes[(2, 9999)]["batch"] != outcomes[(1, 1001)]["batch"]
        assert report.total("failed") == 2 and not report.converged
        assert report.total("isolation_requests") == 1
        # The exists pair got its association id from a bulk lookup.
        store, _ = StateStore.open(settings.state.path)
        ids = store.association_ids("switch-host", [pack(3, 1003)])
        store.close()
        assert ids[pack(3, 1003)] is not None


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_limits_hold_from_the_servers_side(
    tmp_path: Path, sim_factory: Callable[..., Simulator], gateway: str
) -> None:
    desired = all_pairs(10, 100)  # 1000 pairs
    sim = sim_factory(SimulatorOptions(latency_ms=20), switches=10, hosts=100)
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(
            tmp_path,
            url,
            write_csv(tmp_path / "t.csv", desired),
            gateway=gateway,
            cmdb_extra="batch_size = 50",
            rate_limit=10,
            concurrency=3,
        )
        settings = load(cfg)
        report, _ = await run_cycle(settings)
        stats = sim.stats()
        assert report.converged and sim.pairs(ASST) == set(desired)
        assert stats["max_batch"] <= 50
        # Paced evenly at the rate, 10% allowed for loopback jitter (issue 15); on the API
        # gateway reads and writes each have a budget of their own.
        budgets = 2 if gateway == "apigw" else 1
        assert stats["peak_rps"] <= 10 * budgets * 1.1
        assert stats["peak_in_flight"] <= 3


async def test_bad_rows_are_skipped_good_rows_sync(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=3, hosts=10)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = tmp_path / "t.csv"
        topo.write_bytes(
            b"bk_inst_id,bk_asst_inst_id\n1,1001\nabc,1002\n\n2,1002,7\n2\n-5,1003\n2,1003\n"
            b"3,\xff\xfe\n3,1004\n"
        )
        settings = load(write_config(tmp_path, url, topo))
        _, logs = await run_cycle(settings)
        assert sim.pairs(ASST) == {(1, 1001), (2, 1003), (3, 1004)}
        bad = [line for line in logs if line["event"] == "bad_record"]
        origins = sorted(line["origin"] for line in bad)
        assert origins == sorted(f"{topo}:{n}" for n in (3, 5, 6, 7, 9))
        assert any("abc" in line["reason"] for line in bad)
        # Bound once per relation task, so even the file source's own lines carry it.
        assert all(line["relation"] == "switch-host" and line["cycle"] for line in bad)


async def test_missing_source_fails_the_relation_only(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=2, hosts=5)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", [(1, 1001)])
        settings = load(write_config(tmp_path, url, topo))
        await run_cycle(settings)
        topo.unlink()
        report, logs = await run_cycle(settings)
        assert report.relations[0].error and str(topo) in report.relations[0].error
        assert any(line["event"] == "relation_failed" for line in logs)
        store, _ = StateStore.open(settings.state.path)
        assert store.count("switch-host") == 1  # known state kept as it was
        store.close()


async def test_empty_answer_after_a_large_one_fails_the_relation(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    desired = all_pairs(2, 10)
    sim = sim_factory(switches=2, hosts=10)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", desired)
        settings = load(write_config(tmp_path, url, topo))
        await run_cycle(settings)
        write_csv(topo, [])  # a truncated export: header only
        report, logs = await run_cycle(settings)
        error = report.relations[0].error or ""
        assert "returned no pairs, but 20 last time" in error and "SIGHUP" in error
        assert any(line["event"] == "relation_failed" for line in logs)
        store, _ = StateStore.open(settings.state.path)
        assert store.count("switch-host") == 20  # known state untouched
        store.close()
        # A resync (SIGHUP) accepts the empty source.
        report, _ = await run_cycle(settings, resync=True)
        assert report.relations[0].error is None and report.relations[0].desired == 0
