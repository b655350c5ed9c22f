"""Smoke run of the re-cabling benchmark at a small size: every host moved, the request
counts at the ideal, the figures there (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import moves

pytestmark = pytest.mark.timeout(120)


def test_moves(tmp_path: Path) -> None:
    r = moves.run(tmp_path, 1_000, latency_ms=5.0, per_detail_ms=0.02)
    assert r["moved"] == 1_000 and r["created"] == 1_000 and r["failed"] == 0
    assert (r["delete_requests"], r["create_requests"]) == (2, 5)
    assert r["requests_over_ideal"] == 1.0
    for key in ("ideal_s", "cycle_s", "wall_s", "cpu_s", "max_rss_mb", "efficiency"):
        assert r[key] > 0, key
