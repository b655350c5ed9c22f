"""Moves against the simulator: re-cabled hosts follow the source in one cycle, a swap
swaps, a foreign blocker is held (and named) unless opted in, guards and caps hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cmdb_simulator import Simulator
from syncd.core.answer import Answer, Verdict
from syncd.core.outcome import BatchOutcome, whole_failure
from syncd.engine.moving import HELD_REPEAT
from syncd.engine.report import CycleReport
from syncd.engine.sendstep import Details
from tests.helpers import ASST, capture_logs, engine_for, load, pair_lines, write_config, write_csv

V1 = [(1, 1001), (1, 1002), (2, 1003)]
V2 = [(2, 1001), (1, 1002), (3, 1003)]  # hosts 1001 and 1003 re-cabled (the example)


class Rig:
    def __init__(self, tmp_path: Path, url: str, extra: str = "", **engine_kw: Any) -> None:
        self.topo = write_csv(tmp_path / "t.csv", [])
        self.settings = load(write_config(tmp_path, url, self.topo, extra=extra))
        self.logs: list[dict[str, Any]] = []
        self.engine_kw = engine_kw

    async def cycle(self, rows: list[tuple[int, int]], *, resync: bool = False) -> CycleReport:
        write_csv(self.topo, rows)
        async with engine_for(self.settings, **self.engine_kw) as engine:
            with capture_logs() as logs:
                report = await engine.cycle(resync=resync)
        self.logs.extend(logs)
        return report

    def lines(self, **match: Any) -> list[dict[str, Any]]:
        return [p for p in pair_lines(self.logs) if all(p.get(k) == v for k, v in match.items())]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line["event"] == name]


PRUNE_ON = (
    "\n[relations.prune]\nenabled = true\ngrace_seconds = 0\ngrace_cycles = 1\nmax_fraction = 1.0\n"
)


@pytest.mark.parametrize("extra", ["", PRUNE_ON], ids=["pruning-off", "pruning-on"])
async def test_recabled_hosts_move_in_one_cycle(
    tmp_path: Path, sim_factory: Callable[..., Simulator], extra: str
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, extra)
        await rig.cycle(V1)
        ids = {(a["bk_inst_id"], a["bk_asst_inst_id"]): a["id"] for a in sim.associations(ASST)}
        report = await rig.cycle(V2)
        assert sim.pairs(ASST) == set(V2)  # one cycle, no signal
        rel = report.relations[0]
        assert rel.moved == 2 and rel.failed == 0 and rel.held == 0 and rel.converged
        assert rel.deleted == 0  # a move is not a prune
        assert report.summary()["moved"] == 2
        deletes = rig.lines(operation="move", step="delete")
        assert [(d["bk_inst_id"], d["bk_asst_inst_id"], d["outcome"]) for d in deletes] == [
            (1, 1001, "deleted"),
            (2, 1003, "deleted"),
        ]
        assert deletes[0]["replaced_by"] == {"bk_inst_id": 2, "bk_asst_inst_id": 1001}
        assert deletes[0]["association_id"] == ids[(1, 1001)]
        creates = rig.lines(operation="move", step="create")
        assert {(c["bk_inst_id"], c["bk_asst_inst_id"]) for c in creates} == {(2, 1001), (3, 1003)}
        by_new = {(c["bk_inst_id"], c["bk_asst_inst_id"]): c for c in creates}
        assert by_new[(2, 1001)]["outcome"] == "created"
        assert by_new[(2, 1001)]["replaces"] == [
            {"bk_inst_id": 1, "bk_asst_inst_id": 1001, "association_id": ids[(1, 1001)]}
        ]
        # Deletes before creates: every move delete's batch comes first.
        assert max(d["batch"] for d in deletes) < min(c["batch"] for c in creates)
        # Nothing more to do; the new pairs are owned (they move again later: a chain).
        again = await rig.cycle(V2)
        assert again.relations[0].sent == 0 and again.relations[0].moved == 0
        chain = await rig.cycle([(4, 1001), (1, 1002), (3, 1003)])
        assert chain.relations[0].moved == 1
        assert sim.pairs(ASST) == {(4, 1001), (1, 1002), (3, 1003)}


async def test_one_one_swap_in_one_cycle(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:1")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle([(1, 1001), (2, 1002), (3, 1003)])
        report = await rig.cycle([(1, 1002), (2, 1001), (3, 1003)])
        assert sim.pairs(ASST) == {(1, 1002), (2, 1001), (3, 1003)}
        assert report.relations[0].moved == 2 and report.relations[0].converged


async def test_foreign_blocker_is_held_named_and_only_replaced_when_opted_in(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n", existing=[(1, 1001)])
    async with sim.running(host="127.0.0.1", port=0) as url:
        theirs = sim.associations(ASST)[0]["id"]
        rig = Rig(tmp_path, url, PRUNE_ON)
        for _ in range(3):
            report = await rig.cycle([(2, 1001), (2, 1002)])
        assert sim.pairs(ASST) == {(1, 1001), (2, 1002)}  # never touched
        rel = report.relations[0]
        assert rel.held == 1 and rel.moved == 0 and rel.deleted == 0
        held = rig.lines(outcome="held", reason="foreign_blocker")
        assert held, "the held pair is logged"
        line = held[-1]
        assert (line["bk_inst_id"], line["bk_asst_inst_id"]) == (2, 1001)
        assert line["blocked_by"] == [
            {"bk_inst_id": 1, "bk_asst_inst_id": 1001, "association_id": theirs}
        ]
        assert "delete it in the CMDB" in line["error"]
        # Never sent: the blocker is known (the first resync read it), so no request is spent.
        assert not [p for p in rig.lines(bk_asst_inst_id=1001) if "batch" in p]

        # The blocker is deleted by someone else; a relist sees it gone: sent, no SIGHUP
        # needed for the hold itself (the watch path is tested with the daemon).
        sim.delete_pairs(ASST, [(1, 1001)])
        released = await rig.cycle([(2, 1001), (2, 1002)], resync=True)
        assert released.relations[0].created == 1
        assert sim.pairs(ASST) == {(2, 1001), (2, 1002)}


async def test_replace_foreign_opt_in(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n", existing=[(1, 1001)])
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, "\n[relations.moves]\nreplace_foreign = true\n")
        report = await rig.cycle([(2, 1001)])
        assert sim.pairs(ASST) == {(2, 1001)} and report.relations[0].moved == 1


async def test_caps_hold_moves_for_later_cycles(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=6, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url, "\n[relations.moves]\nmax_count = 2\n")
        await rig.cycle([(1, d) for d in range(1001, 1007)])
        moved = [(2, d) for d in range(1001, 1007)]
        first = await rig.cycle(moved)
        assert first.relations[0].moved == 2 and first.relations[0].moves_held == 4
        held = rig.events("moves_held")
        assert len(held) == 1 and held[0]["capped"] == 4  # once per cycle, not per pair
        await rig.cycle(moved)
        await rig.cycle(moved)
        assert sim.pairs(ASST) == set(moved)


async def test_no_moves_when_the_source_shrank(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=10, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        full = [(1, d) for d in range(1001, 1011)]
        await rig.cycle(full)
        report = await rig.cycle([(2, 1001)])  # 10 -> 1 pair: a broken export, not a move
        assert sim.pairs(ASST) == set(full)
        assert report.relations[0].moved == 0 and report.relations[0].moves_held == 1
        assert "shrank" in rig.events("moves_held")[-1]["blocked"]


async def test_no_moves_when_a_source_failed(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        good = write_csv(tmp_path / "good.csv", [(1, 1001), (1, 1002)])
        gone = tmp_path / "other.csv"
        write_csv(gone, [(1, 1003)])
        rig = Rig(tmp_path, url)
        text = rig.settings  # noqa: F841 (built below from a config with two sources)
        cfg = tmp_path / "syncd.toml"
        body = cfg.read_text().replace(
            f'source = {{ type = "file", path = "{rig.topo}" }}',
            f'sources = [{{ name = "a", type = "file", path = "{good}" }}, '
            f'{{ name = "b", type = "file", path = "{gone}" }}]',
        )
        cfg.write_text(body)
        rig.settings = load(cfg)
        async with engine_for(rig.settings) as engine:
            await engine.cycle()
            assert sim.pairs(ASST) == {(1, 1001), (1, 1002), (1, 1003)}
            write_csv(good, [(2, 1001), (1, 1002)])  # a re-cable ...
            gone.unlink()  # ... while the other source fails
            with capture_logs() as logs:
                report = await engine.cycle()
        assert sim.pairs(ASST) == {(1, 1001), (1, 1002), (1, 1003)}
        assert report.relations[0].moved == 0 and report.relations[0].moves_held == 1
        assert any(line["event"] == "moves_held" and line["blocked"] for line in logs)


class FailFirstCreate:
    """A send step whose first batch fails as a whole (a lost request), then the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failed = False

    async def __call__(self, client: Any, rel: Any, details: Details) -> BatchOutcome:
        if not self.failed:
            self.failed = True
            return whole_failure(details, "boom", Answer(Verdict.FAILED, 500, message="boom"))
        return await self.real(client, rel, details)  # type: ignore[no-any-return]


async def test_a_create_failing_after_its_delete_is_retried(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    from syncd.engine.sendstep import send_batch

    sim = sim_factory(switches=4, hosts=5, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle([(1, 1001)])
        rig.engine_kw = {"send": FailFirstCreate(send_batch)}
        first = await rig.cycle([(2, 1001)])
        assert sim.pairs(ASST) == set()  # deleted, the create failed
        assert first.relations[0].move_failed == 1 and first.relations[0].moved == 0
        failed = rig.lines(operation="move", step="create", outcome="failed")
        assert failed and failed[0]["replaces"][0]["bk_asst_inst_id"] == 1001
        rig.engine_kw = {}
        second = await rig.cycle([(2, 1001)])
        assert sim.pairs(ASST) == {(2, 1001)} and second.relations[0].created == 1


async def test_an_unknown_blocker_is_looked_up_once_then_held_by_name(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle([(2, 1002)])
        # Someone else cables host 1001 behind syncd's back (no watch here): syncd's known
        # state does not have it, so the first try is refused ...
        async with engine_for(rig.settings) as engine:
            await engine.client.batch_create("bk_switch", "host", ASST, [(1, 1001)])
        first = await rig.cycle([(2, 1001), (2, 1002)])
        assert first.relations[0].failed == 1
        assert rig.lines(outcome="failed", reason="conflict_1_n")
        # ... the blocker is looked up and known (not owned): later cycles hold the pair by
        # name without sending it, and never delete someone else's pair.
        before = sim.stats()["requests_by_api"].get("batch_create_instance_association", 0)
        second = await rig.cycle([(2, 1001), (2, 1002)])
        after = sim.stats()["requests_by_api"].get("batch_create_instance_association", 0)
        assert after == before and second.relations[0].held == 1
        assert (
            rig.lines(outcome="held", reason="foreign_blocker")[-1]["blocked_by"][0]["bk_inst_id"]
            == 1
        )
        assert sim.pairs(ASST) == {(1, 1001), (2, 1002)}


async def test_plan_shows_moves_old_to_new_and_changes_pending(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    from syncd.cli import _named_pairs
    from syncd.commands.planview import plan_document, render_text

    sim = sim_factory(switches=4, hosts=5, mapping="1:n")
    async with sim.running(host="127.0.0.1", port=0) as url:
        rig = Rig(tmp_path, url)
        await rig.cycle(V1)
        ids = {(a["bk_inst_id"], a["bk_asst_inst_id"]): a["id"] for a in sim.associations(ASST)}
        write_csv(rig.topo, V2)
        async with engine_for(rig.settings) as engine:
            plan = await engine.plan_relation(rig.settings.relations[0])
            named = engine.store.association_ids("switch-host", _named_pairs(plan))
        doc = plan_document(rig.settings, [plan], {"switch-host": named})
        rel = doc["relations"][0]
        assert doc["changes"] is True  # syncd plan exits 2
        assert rel["counts"]["move"] == 2 and rel["counts"]["create"] == 0 and rel["create"] == []
        assert rel["move"][0] == {
            "bk_inst_id": 2,
            "bk_asst_inst_id": 1001,
            "replaces": [
                {"bk_inst_id": 1, "bk_asst_inst_id": 1001, "association_id": ids[(1, 1001)]}
            ],
        }
        text = render_text(doc)
        assert f"> 1 -> 1001 (association {ids[(1, 1001)]})  =>  2 -> 1001" in text
        assert "move 2" in text and text.endswith("changes pending")
        assert sim.pairs(ASST) == set(V1)  # a plan writes nothing


async def test_a_held_pair_is_named_once_then_hourly_and_again_when_its_blocker_changes(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    sim = sim_factory(switches=4, hosts=5, mapping="1:n", existing=[(1, 1001)])
    async with sim.running(host="127.0.0.1", port=0) as url:
        topo = write_csv(tmp_path / "t.csv", [(2, 1001), (2, 1002)])
        settings = load(write_config(tmp_path, url, topo))
        now = [1_000_000.0]
        async with engine_for(settings, clock=lambda: now[0]) as engine:

            async def held_lines(*, resync: bool = False) -> list[dict[str, Any]]:
                with capture_logs() as logs:
                    report = await engine.cycle(resync=resync)
                assert report.relations[0].held == 1  # counted every cycle
                return [p for p in pair_lines(logs) if p.get("outcome") == "held"]

            assert len(await held_lines()) == 1
            for _ in range(3):
                now[0] += 300
                assert await held_lines() == []  # same pair, same blocker: not again
            now[0] += HELD_REPEAT
            assert len(await held_lines()) == 1  # a reminder, once an hour
            # Someone re-cables the blocker: a different pair holds 1001 now; news again.
            sim.delete_pairs(ASST, [(1, 1001)])
            async with engine_for(settings) as other:
                await other.client.batch_create("bk_switch", "host", ASST, [(3, 1001)])
            now[0] += 300
            again = await held_lines(resync=True)
            assert [line["blocked_by"][0]["bk_inst_id"] for line in again] == [3]
