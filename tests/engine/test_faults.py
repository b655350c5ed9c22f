"""Never lose a pair, never double one: convergence under every fault (issue 4)."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cmdb_simulator import Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.engine.report import CycleReport
from tests.helpers import (
    ASST,
    Proc,
    capture_logs,
    engine_for,
    fixture_dict,
    load,
    pair_lines,
    run_cycle,
    start_simulator,
    write_config,
    write_csv,
)

# 6,000 pairs: 30 full batches of 200 a cycle, so a 0.2 fault rate hits several requests of
# every cycle and every kind; more pairs only repeat the same batches.
SWITCHES, HOSTS = 50, 120
DESIRED = [(s, 1000 + h) for s in range(1, SWITCHES + 1) for h in range(1, HOSTS + 1)]


def assert_exact(sim: Simulator, state_db: Path, desired: list[tuple[int, int]]) -> None:
    rows = sim.associations(ASST)
    pairs = Counter((r["bk_inst_id"], r["bk_asst_inst_id"]) for r in rows)
    assert max(pairs.values()) == 1, "a pair is doubled in the CMDB"
    assert set(pairs) == set(desired)
    db = sqlite3.connect(state_db)
    try:
        state = {(s, d): i for s, d, i in db.execute("SELECT src, dst, association_id FROM pairs")}
    finally:
        db.close()
    assert set(state) == set(desired)
    by_pair = {(r["bk_inst_id"], r["bk_asst_inst_id"]): r["id"] for r in rows}
    assert state == by_pair, "state must know every pair's association id"


async def converge(
    tmp_path: Path, url: str, max_cycles: int = 12
) -> tuple[list[CycleReport], list[dict[str, Any]]]:
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", DESIRED),
        cmdb_extra="max_retries = 8",
        sync_extra="pair_backoff_base = 0",
    )
    settings = load(cfg)
    reports: list[CycleReport] = []
    async with engine_for(settings, seed=7) as engine:
        with capture_logs() as logs:
            for _ in range(max_cycles):
                report = await engine.cycle()
                reports.append(report)
                if report.converged:
                    break
    return reports, logs


# No core-busy: the batch path takes no lock, so it is never drawn there (issue 11).
FAULTS = ["502", "504", "504-after", "drop", "cmdb-busy", "audit-fail"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kinds", [[k] for k in FAULTS] + [FAULTS])
async def test_converges_exactly_under_faults(
    tmp_path: Path, sim_factory: Callable[..., Simulator], kinds: list[str]
) -> None:
    sim = sim_factory(
        SimulatorOptions(fault_rate=0.2, fault_kinds=tuple(kinds), seed=42),
        switches=SWITCHES,
        hosts=HOSTS,
    )
    async with sim.running(host="127.0.0.1", port=0) as url:
        reports, logs = await converge(tmp_path, url)
        assert reports[-1].converged, [r.summary() for r in reports]
        assert_exact(sim, tmp_path / "state.db", DESIRED)
        stats = sim.stats()
        assert sum(stats["faults"].values()) > 0
        # Every detail the client logged has exactly one final outcome per request
        # and no pair was reported created twice.
        created = Counter(
            (p["bk_inst_id"], p["bk_asst_inst_id"])
            for p in pair_lines(logs)
            if p["outcome"] == "created"
        )
        assert created and max(created.values()) == 1
        requests = sum(stats["requests_by_api"].values())
        print(f"faults={kinds} cycles={len(reports)} requests={requests} faults={stats['faults']}")


async def test_relation_refused_keeps_others_going(tmp_path: Path) -> None:
    fixture = fixture_dict(switches=3, hosts=5)
    fixture["model_associations"].append(
        {
            "bk_obj_asst_id": "bk_switch_uplink_bk_switch",
            "bk_obj_id": "bk_switch",
            "bk_asst_id": "uplink",
            "bk_asst_obj_id": "bk_switch",
            "mapping": "n:n",
        }
    )
    fixture["apps"][0]["deny"] = [
        {"api": "batch_create_instance_association", "bk_obj_asst_id": ASST}
    ]
    from cmdb_simulator import Fixture

    sim = Simulator(Fixture.from_dict(fixture), SimulatorOptions())
    async with sim.running(host="127.0.0.1", port=0) as url:
        uplinks = write_csv(tmp_path / "u.csv", [(1, 2), (2, 3)])
        cfg = write_config(
            tmp_path,
            url,
            write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)]),
            extra=f"""
[[relations]]
name = "uplinks"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "bk_switch"
bk_obj_asst_id = "bk_switch_uplink_bk_switch"
source = {{ type = "file", path = "{uplinks}" }}
""",
        )
        settings = load(cfg)
        report, logs = await run_cycle(settings)
        by_name = {r.relation: r for r in report.relations}
        assert by_name["uplinks"].created == 2 and by_name["uplinks"].error is None
        assert by_name["switch-host"].error and "9900403" in by_name["switch-host"].error
        refused = [line for line in logs if line["event"] == "relation_refused"]
        assert len(refused) == 1 and refused[0]["permission"] and refused[0]["fix"]
        assert refused[0]["relation"] == "switch-host"
        assert not [line for line in logs if line["event"] == "relation_failed"]
        failed = [p for p in pair_lines(logs) if p["relation"] == "switch-host"]
        assert len(failed) == 2 and all(p["outcome"] == "failed" for p in failed)
        assert sim.pairs("bk_switch_uplink_bk_switch") == {(1, 2), (2, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_rate_limit_storm_stays_under_configured_limit(
    tmp_path: Path, sim_factory: Callable[..., Simulator], gateway: str
) -> None:
    desired = [(s, 1000 + h) for s in range(1, 11) for h in range(1, 101)]
    sim = sim_factory(SimulatorOptions(rate_limit=15), switches=10, hosts=100)
    async with sim.running(host="127.0.0.1", port=0) as url:
        cfg = write_config(
            tmp_path,
            url,
            write_csv(tmp_path / "t.csv", desired),
            gateway=gateway,
            cmdb_extra="batch_size = 10\nmax_retries = 20",
            rate_limit=40,
            retry_cap=2,
        )
        settings = load(cfg)
        async with engine_for(settings) as engine:
            report = await engine.cycle()
            rate_after = engine.client.limiter.rate
            decreases = engine.client.limiter.decreases
        stats = sim.stats()
        assert report.converged and sim.pairs(ASST) == set(desired)
        assert stats["peak_rps"] <= 40  # never above syncd's configured limit
        # The gateway refused some (ESB: 1306429 in an HTTP 200; API gateway: HTTP 429) ...
        code = "1306429" if gateway == "esb" else "1642903"
        refused = stats["requests_by_code"].get(code, 0)
        total = stats["requests"]
        assert refused > 0 and decreases > 0
        # ... and the client learned the limit instead of hammering it.
        assert rate_after < 40
        assert refused < total * 0.5, stats["requests_by_code"]
        print(
            f"storm[{gateway}]: requests={total} refused={refused} peak_rps={stats['peak_rps']}"
            f" client_rate_after={rate_after:.1f} decreases={decreases}"
        )


@pytest.mark.timeout(150)
def test_sigkill_at_random_moments_then_converge(tmp_path: Path, procs: list[Proc]) -> None:
    import json

    desired = [(s, 1000 + h) for s in range(1, 51) for h in range(1, 101)]  # 5,000 pairs
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=50, hosts=100)))
    url = start_simulator(procs, fixture, "--latency-ms", "20", "--per-detail-ms", "0.2")
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", desired),
        cmdb_extra="batch_size = 25",
        concurrency=4,
    )
    rng = random.Random(1234)
    kills = 0
    for _ in range(10):
        daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
        procs.append(daemon)
        daemon.wait_for(lambda l: l.get("event") == "started", timeout=30)
        time.sleep(rng.uniform(0.05, 1.2))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait(10)
        kills += 1
    final = Proc(["-m", "syncd", "once", "--config", str(cfg)])
    procs.append(final)
    assert final.wait(120) == 0, final.stderr()[-2000:]
    assert kills == 10
    import asyncio

    async def read() -> list[tuple[int, int, int]]:
        async with CmdbClient(load(cfg).cmdb) as client:
            rows: list[tuple[int, int, int]] = []
            async for page in client.iter_associations("bk_switch", ASST):
                rows.extend(page)
            return rows

    rows = asyncio.run(read())
    pairs = Counter((s, d) for s, d, _ in rows)
    assert set(pairs) == set(desired) and max(pairs.values()) == 1
    db = sqlite3.connect(tmp_path / "state.db")
    state = {(s, d): i for s, d, i in db.execute("SELECT src, dst, association_id FROM pairs")}
    db.close()
    assert state == {(s, d): i for s, d, i in rows}
