"""Guarded pruning against the simulator: each guard holds, each deletion is logged (issue 8)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmdb_simulator import Simulator
from syncd.engine.report import CycleReport
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

OURS = [(1, 1001), (1, 1002), (2, 1001), (2, 1002), (3, 1003), (3, 1004)]
THEIRS = [(4, 1005), (4, 1006)]  # already in the CMDB: created by someone else


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def prune_cfg(**kw: Any) -> str:
    base = {
        "enabled": "true",
        "grace_seconds": "600",
        "grace_cycles": "2",
        "max_count": "100",
        "max_fraction": "1.0",
        "max_shrink": "0.9",
    }
    base.update({k: str(v) for k, v in kw.items()})
    return "\n[relations.prune]\n" + "".join(f"{k} = {v}\n" for k, v in base.items())


class Rig:
    """One engine over one state file, cycles on demand, logs captured."""

    def __init__(self, tmp_path: Path, url: str, **prune: Any) -> None:
        self.topo = write_csv(tmp_path / "t.csv", OURS + THEIRS)
        self.settings = load(write_config(tmp_path, url, self.topo, extra=prune_cfg(**prune)))
        self.clock = Clock()
        self.logs: list[dict[str, Any]] = []

    async def cycle(
        self, rows: list[tuple[int, int]] | None = None, advance: float = 0
    ) -> CycleReport:
        if rows is not None:
            write_csv(self.topo, rows)
        self.clock.now += advance
        async with engine_for(self.settings, clock=self.clock) as engine:
            with capture_logs() as logs:
                report = await engine.cycle()
        self.logs.extend(logs)
        return report

    def deleted(self) -> set[tuple[int, int]]:
        return {
            (p["bk_inst_id"], p["bk_asst_inst_id"])
            for p in pair_lines(self.logs)
            if p["outcome"] == "deleted"
        }


async def test_grace_ownership_and_logging(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6, existing=THEIRS)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle()
        assert sim.pairs(ASST) == set(OURS + THEIRS)
        keep = OURS[2:]
        # Gone from the source: two of ours and both of theirs.
        r = await rig.cycle(keep, advance=60)
        assert r.total("deleted") == 0  # grace: one cycle, one minute
        r = await rig.cycle(keep, advance=60)
        assert r.total("deleted") == 0  # two cycles, but only two minutes
        r = await rig.cycle(keep, advance=600)
        assert r.total("deleted") == 2
        assert rig.deleted() == set(OURS[:2])
        assert sim.pairs(ASST) == set(keep + THEIRS)  # theirs are never touched
        lines = [p for p in pair_lines(rig.logs) if p["outcome"] == "deleted"]
        for p in lines:
            assert isinstance(p["association_id"], int) and "batch" in p and "index" in p
        # Nothing more to do afterwards.
        r = await rig.cycle(keep, advance=600)
        assert r.total("deleted") == 0


async def test_a_pair_that_comes_back_is_kept(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=2)
        await rig.cycle(OURS)
        await rig.cycle(OURS[1:])  # (1, 1001) absent for one cycle ...
        await rig.cycle(OURS)  # ... and back: its absence resets
        r = await rig.cycle(OURS[1:])  # absent again: one cycle only
        assert r.total("deleted") == 0 and sim.pairs(ASST) == set(OURS)
        r = await rig.cycle(OURS[1:])
        assert rig.deleted() == {OURS[0]}


async def test_source_guards_block_all_pruning(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1, max_shrink=0.5)
        await rig.cycle(OURS)
        # Empty source: nothing deleted, one clear line.
        r = await rig.cycle([])
        assert r.total("deleted") == 0
        assert r.relations[0].prune_blocked == "the source came back empty"
        # Shrunk by more than half: blocked, and the line says how to accept it.
        r = await rig.cycle(OURS[:2])
        assert r.total("deleted") == 0 and "shrank from 6 to 2" in (
            r.relations[0].prune_blocked or ""
        )
        blocked = [line for line in rig.logs if line["event"] == "prune_blocked"]
        assert len(blocked) == 2
        # A failed source: the relation fails, nothing is deleted.
        rig.topo.unlink()
        r = await rig.cycle()
        assert r.relations[0].error and r.total("deleted") == 0
        assert sim.pairs(ASST) == set(OURS)


async def test_caps_and_already_gone(tmp_path: Path, sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1, max_count=2, max_shrink=1.0)
        await rig.cycle(OURS)
        sim.delete_pairs(ASST, [OURS[0]])  # someone deleted one already
        r = await rig.cycle(OURS[4:])  # four of ours absent; cap 2 per cycle
        assert r.total("deleted") == 2
        r = await rig.cycle(OURS[4:])
        assert r.total("deleted") == 2
        assert rig.deleted() == set(OURS[:4])  # the one already gone counted as deleted
        assert not [p for p in pair_lines(rig.logs) if p["outcome"] == "failed"]
        assert sim.pairs(ASST) == set(OURS[4:])


async def test_fraction_cap(tmp_path: Path, sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, grace_seconds=0, grace_cycles=1, max_fraction=0.2, max_shrink=1)
        await rig.cycle(OURS)
        r = await rig.cycle(OURS[5:])  # five absent; 20% of 6 known = 1 per cycle
        assert r.total("deleted") == 1 and len(sim.pairs(ASST)) == 5


async def test_pruning_off_by_default(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6)
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", OURS)
        settings = load(write_config(tmp_path, url, topo))
        assert not settings.relations[0].prune.enabled
        for rows in (OURS, [], OURS[:1]):
            write_csv(topo, rows)
            await run_cycle(settings)
        assert sim.pairs(ASST) == set(OURS)
