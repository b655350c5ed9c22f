"""Smoke run of the pacing benchmark at a small size: every figure there and sane.

No timing assertions (the machine is shared); only that both limiters ran the same
requests end to end and the figures are consistent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import pacing

pytestmark = pytest.mark.timeout(120)


def test_pacing(tmp_path: Path) -> None:
    r = pacing.run(tmp_path, 4_000, rate=20, concurrency=8)
    for name in ("old", "new"):
        assert r[f"{name}_requests"] == 20  # 4,000 pairs in batches of 200
        assert r[f"{name}_peak_rps"] >= 1 and r[f"{name}_peak_rps_client"] >= 1
        assert r[f"{name}_peak_over_rate"] == pytest.approx(r[f"{name}_peak_rps"] / 20, abs=1e-3)
        assert r[f"{name}_send_s"] > 0 and r[f"{name}_throughput"] > 0
    assert r["settings"]["catch_up_s"] == pytest.approx(0.05)  # one interval at 20/s
    assert r["syncd_created"] == 4_000 and r["syncd_requests"] >= 20  # + its reads
    assert r["syncd_cycle_s"] > 0 and r["syncd_peak_rps"] >= 1


def test_peak_in_one_second() -> None:
    assert pacing.peak_in_one_second([]) == 0
    assert pacing.peak_in_one_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
