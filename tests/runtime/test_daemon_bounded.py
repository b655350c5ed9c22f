"""A daemon runs for months: what it keeps of past cycles is bounded (issue 13)."""

from __future__ import annotations

from pathlib import Path

from cmdb_simulator import Simulator
from syncd.runtime.daemon import REPORTS_KEPT, Daemon
from tests.helpers import load, write_config, write_csv


async def test_past_cycle_reports_are_bounded(tmp_path: Path, sim: tuple[Simulator, str]) -> None:
    _, url = sim
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", [(1, 1001)]), interval=0.01)
    daemon = Daemon(load(cfg), max_cycles=REPORTS_KEPT * 3)
    assert await daemon.run() == 0
    assert daemon.engine is not None and daemon.engine.cycles == REPORTS_KEPT * 3
    assert len(daemon.reports) == REPORTS_KEPT
    assert daemon.reports[-1] is daemon.last_report
