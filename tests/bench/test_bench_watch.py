"""Smoke run of the watch benchmarks at small sizes: every figure there and consistent.

No timing assertions (the machine is shared); only that the runs did what they claim.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import watch

pytestmark = pytest.mark.timeout(180)


def test_drift(tmp_path: Path) -> None:
    r = watch.drift(tmp_path, 100)
    assert r["deleted"] == 100 and r["desired"] == 200
    assert r["drift_lines"] == 100 and r["cycles"] == 1  # the watch repaired, not a cycle
    assert 0 <= r["repair_p50_s"] <= r["repair_p99_s"] <= r["repair_all_back_s"]
    assert r["watch_requests"] >= 1 and r["peak_rps"] >= 1


def test_relist(tmp_path: Path) -> None:
    r = watch.relist(tmp_path, 5_000)
    assert r["key_pages"] == 10 and r["offset_pages"] == 11  # offset needs an empty last page
    assert r["key_rows_skipped"] == 0
    assert r["offset_rows_skipped"] == 500 * sum(range(11))  # starts 0, 500, ..., 5,000
    assert r["key_s"] > 0 and r["offset_s"] > 0 and r["offset_over_key"] > 0
