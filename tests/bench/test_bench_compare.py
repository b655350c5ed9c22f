"""``python -m bench --compare``: each figure against an earlier results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench.compare import compare, direction, figures, verdict


def results(date: str, **sections: dict[str, Any]) -> dict[str, Any]:
    return {"machine": {"date": date}, "quick": False, **sections}


OLD = results(
    "2026-11-28T10:23:23Z",
    diff_scale={"pairs": 1_000_000, "noop_cycle_s": 2.0, "noop_max_rss_mb": 280.0},
    throughput={"efficiency": 0.92, "cpu_s_per_100k": 2.3, "requests": 500, "settings": {}},
    ratios={"baseline_over_syncd_cycle": 15.0},
)
NEW = results(
    "2026-12-07T04:00:00Z",
    diff_scale={"pairs": 1_000_000, "noop_cycle_s": 0.9, "noop_max_rss_mb": 310.0},
    throughput={"efficiency": 0.91, "cpu_s_per_100k": 1.0, "requests": 500, "new_figure": 3},
    ratios={"baseline_over_syncd_cycle": 12.0},
)


def test_directions_and_verdicts() -> None:
    assert direction("noop_cycle_s") == direction("max_rss_mb_info") == -1
    assert direction("efficiency") == direction("pairs_per_cpu_s_logging") == 1
    assert direction("peak_rps_server") == direction("requests") == 0
    assert verdict("noop_cycle_s", 2.0, 0.9) == "better"
    assert verdict("noop_max_rss_mb", 280.0, 310.0) == "worse"
    assert verdict("efficiency", 0.92, 0.91) == ""  # within the noise
    assert verdict("requests", 500, 900) == ""  # no known direction


def test_figures_skip_counts_of_size_settings_and_flags() -> None:
    got = figures({**NEW, "targets": {"x": True}})
    assert ("diff_scale", "noop_cycle_s") in got
    assert ("diff_scale", "pairs") not in got and ("throughput", "settings") not in got
    assert not any(section == "targets" for section, _ in got)


def test_compare_table_marks_regressions() -> None:
    text = compare(OLD, NEW)
    rows = {line.split()[1]: line.split() for line in text.splitlines()[3:-2]}
    assert rows["noop_cycle_s"][2:] == ["2", "0.9", "0.450", "better"]
    assert rows["noop_max_rss_mb"][-1] == "worse"
    assert rows["baseline_over_syncd_cycle"][-1] == "worse"
    assert rows["efficiency"][-1] == "0.989"  # no verdict: within 10%
    assert "new_figure" not in rows  # not in the old run
    assert text.splitlines()[-1] == "6 figures compared, 2 worse by more than 10%"


def test_cli_compares_two_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(OLD))
    new.write_text(json.dumps(NEW))
    assert bench_main.main(["--compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "noop_cycle_s" in out and "worse" in out


def test_cli_refuses_a_file_that_is_not_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    for args in ([str(bad)], [str(tmp_path / "missing.json")], ["a", "b", "c"]):
        with pytest.raises(SystemExit) as exc:
            bench_main.main(["--compare", *args])
        assert exc.value.code == 2
    assert "--compare" in capsys.readouterr().err


def test_cli_compares_a_run_against_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(OLD))
    machine = {"date": "2026-12-07T04:00:00Z", "cores": 2, "cpu": "x", "python": "3.11"}
    run = {**NEW, "machine": machine}
    monkeypatch.setattr(bench_main, "run_all", lambda quick, only, workdir: run)
    assert bench_main.main(["--compare", str(old), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2026-11-28T10:23:23Z -> 2026-12-07T04:00:00Z" in out
    assert (tmp_path / "out" / "latest.json").exists()
