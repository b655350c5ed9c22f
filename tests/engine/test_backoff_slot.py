"""The engine does not hold a concurrency slot while the client backs off (issue 13): a
batch waiting to retry lets the next batch go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmdb_simulator import Simulator
from cmdb_simulator.faults import FaultPlan
from tests.helpers import capture_logs, engine_for, load, write_config, write_csv


class FirstCreateFails(FaultPlan):
    """The first batch create gets a 502 (sent again later); nothing else is faulted."""

    def __init__(self) -> None:
        super().__init__(0)
        self.creates = 0

    def draw(self, rate: float, kinds: tuple[str, ...], seed: int, api: str = "") -> str | None:
        if api != "batch_create_instance_association":
            return None
        self.creates += 1
        return "502" if self.creates == 1 else None


async def test_a_backing_off_batch_lets_the_next_one_go(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    simulator, url = sim
    faults = FirstCreateFails()
    simulator._faults = faults  # type: ignore[attr-defined]
    desired = [(1, 1000 + h) for h in range(1, 41)]  # two batches of 20
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", desired),
        concurrency=1,
        cmdb_extra="batch_size = 20",
        retry_cap=1.0,
    )
    cfg.write_text(cfg.read_text().replace("retry_base = 0.01", "retry_base = 1.0"))
    async with engine_for(load(cfg), seed=7) as engine:
        with capture_logs() as logs:
            report = await engine.cycle()
    assert report.total("created") == 40 and faults.creates == 3
    retried: Any = [l for l in logs if l.get("event") == "retry"]
    assert len(retried) == 1 and retried[0]["delay"] > 0.1
    created = [l for l in logs if l.get("event") == "pair" and l.get("outcome") == "created"]
    # Batch 2 was answered while batch 1 waited to be sent again.
    assert created[0]["batch"] == 2, [(l["batch"], l["bk_asst_inst_id"]) for l in created[:3]]
