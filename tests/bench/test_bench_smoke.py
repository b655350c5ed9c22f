"""Smoke run of every benchmark scenario at a small size: all figures there, values sane.

No timing assertions: the figures come from a shared machine; this only proves the
harness runs end to end (syncd in its own processes; the simulator too in test_throughput,
in a thread of this process elsewhere: tests/bench/conftest.py) and reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import baseline, diff_scale, isolation, overhead, throughput, webhook_latency

pytestmark = pytest.mark.timeout(120)

FAST = {"latency_ms": 5.0, "per_detail_ms": 0.02}


@pytest.mark.process_simulator  # bench's own simulator processes, and their CPU figure
def test_throughput(tmp_path: Path) -> None:
    r = throughput.run(tmp_path, 1_000, **FAST)
    assert r["created"] == r["pair_lines"] == 1_000
    assert r["requests"] == 5 and r["max_batch"] == 200 and r["http_429"] == 0
    assert r["peak_in_flight_server"] <= 16 and r["peak_rps_server"] >= 1
    for key in ("ideal_s", "cycle_s", "wall_s", "floor_client_s", "cpu_s", "max_rss_mb"):
        assert r[key] > 0, key
    assert 0 < r["efficiency"] <= 1.5 and r["wall_s"] >= r["cycle_s"]
    assert r["cpu_s_per_100k"] == pytest.approx(r["cpu_s"] * 100, rel=0.01)


def test_baseline(tmp_path: Path) -> None:
    r = baseline.run(tmp_path, 600, **FAST)
    assert r["requests"] == 3 and r["wall_s"] > 0 and r["per_request_ms"] >= 5


def test_diff_scale(tmp_path: Path) -> None:
    r = diff_scale.run(tmp_path, 5_000)
    assert r["pairs"] == 5_000 and r["changed_pairs"] == 50
    assert r["changed_created"] == r["changed_absent"] == 50 and r["changed_requests"] == 1
    assert 0 < r["noop_cycle_s"] < r["noop_wall_s"] and 10 < r["noop_max_rss_mb"] < 1000


def test_overhead(tmp_path: Path) -> None:
    r = overhead.run(tmp_path, 2_000)
    assert r["pairs_per_cpu_s_parse_diff"] and r["pairs_per_cpu_s_parse_diff"] > 0
    for key in ("cpu_s_process_info", "cpu_s_process_warning", "cpu_s_fixed"):
        assert r[key] > 0, key


def test_main_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main.main(["--quick", "--only", "baseline", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "wall_s" in out
    doc = json.loads((tmp_path / "latest-quick.json").read_text())
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["python"]
    assert doc["baseline"]["requests"] > 0


def test_isolation(tmp_path: Path) -> None:
    r = isolation.run(tmp_path, 1_000)
    assert r["stale_hosts"] == 10
    for way in ("reacting", "precheck"):
        assert r[f"{way}_exit"] == 1  # only because of the stale hosts' pairs
        assert r[f"{way}_created"] == 990 and r[f"{way}_failed"] == 10
    assert r["reacting_isolation_requests"] == 10 and r["reacting_host_checks"] == 0
    assert r["precheck_isolation_requests"] == 0 and r["precheck_host_checks"] == 1
    assert r["precheck_creates"] == 5 and r["reacting_creates"] == 15
    assert r["clean_precheck_requests"] == r["clean_reacting_requests"] + 1


def test_webhook_latency(tmp_path: Path) -> None:
    r = webhook_latency.run(tmp_path, 100, cost_ms=0.5)
    assert r["first_cycle_created"] == 100 and r["burst_exact"] is True
    for key in ("create", "move_b_end", "delete_pruned"):
        assert 0 < r[key]["min_s"] <= r[key]["median_s"] <= r[key]["max_s"], key
    assert 0 < r["burst_first_pair_s"] <= r["burst_all_s"] and r["burst_groups"] >= 1
