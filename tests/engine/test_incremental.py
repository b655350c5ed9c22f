"""A pushed change applied at once (syncd.engine.change), driven by real NetBox 4.7.3 deliveries.

The deliveries (../shared/fixtures/netbox-4.7.3-webhooks) name cables 10 and 11 between the
switch sw-wh-01 (device 8) and servers srv-wh-NNN (device 8 + NNN); a loopback NetBox
stand-in serves those objects as NetBox's REST API would, the simulator is the CMDB.
After every change, a full read must find nothing to do.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.netbox_standin import StandIn, serve_standin
from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.config.settings import Settings
from syncd.engine.change import Change, ChangeUncertain
from syncd.engine.reconcile import Reconciler
from syncd.runtime.webhooks import event_change, parse_event
from tests.helpers import ASST, capture_logs, delivery, engine_for, load, pair_lines

SWITCH = 8
CABLES = "/api/dcim/cables/"


def server(device: int) -> str:
    return f"srv-wh-{device - SWITCH:03d}"


def cmdb(hosts: int = 40, existing: tuple[tuple[int, int], ...] = ()) -> dict[str, Any]:
    return {
        "instance_associations": [
            {"bk_obj_asst_id": ASST, "bk_inst_id": s, "bk_asst_inst_id": d} for s, d in existing
        ],
        "apps": [{"bk_app_code": "syncd", "bk_app_secret": "s3cret-app"}],
        "objects": {
            "bk_switch": [{"bk_inst_id": 1, "bk_inst_name": "sw-wh-01"}],
            "host": [
                {"bk_host_id": 1000 + i, "bk_host_name": f"srv-wh-{i:03d}"}
                for i in range(1, hosts + 1)
            ],
        },
        "model_associations": [
            {
                "bk_obj_asst_id": ASST,
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": "n:n",
            }
        ],
    }


def devices(hosts: int = 40) -> dict[int, dict[str, Any]]:
    out = {SWITCH: {"id": SWITCH, "name": "sw-wh-01", "role": {"slug": "switch"}}}
    for d in range(SWITCH + 1, SWITCH + hosts + 1):
        out[d] = {"id": d, "name": server(d), "role": {"slug": "server"}}
    return out


def cable_row(ident: int, host_device: int, port: int = 1) -> dict[str, Any]:
    """A cable as NetBox's REST API gives it (the shape of delivery 001's ``data``)."""
    row = copy.deepcopy(json.loads(delivery("001")["body"])["data"])
    row["id"] = ident
    a = row["a_terminations"][0]["object"]
    a["id"], a["name"] = 400 + ident, f"Ethernet{port}"
    b = row["b_terminations"][0]["object"]
    b["device"] = {"id": host_device, "name": server(host_device)}
    return dict(row)


def config(tmp_path: Path, cmdb_url: str, netbox_url: str, prune: bool = True) -> Settings:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "{cmdb_url}"
app_code = "syncd"
app_secret = "s3cret-app"
rate_limit = 500
retry_base = 0.01
retry_cap = 0.1

[state]
path = "{tmp_path / "state.db"}"

[sync]
watch = false

[[relations]]
name = "dc"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source_key = "bk_inst_name"
target_key = "bk_host_name"
source = {{ type = "netbox", url = "{netbox_url}", token = "{"t" * 40}", switch_role = ["switch"] }}

[relations.prune]
enabled = {"true" if prune else "false"}
grace_seconds = 0
grace_cycles = 1
max_fraction = 1.0
""",
        encoding="utf-8",
    )
    return load(cfg)


@dataclass
class World:
    sim: Simulator
    netbox: StandIn
    engine: Reconciler
    settings: Settings

    @property
    def cables(self) -> list[dict[str, Any]]:
        return self.netbox.lists[CABLES]

    async def deliver(self, number: str) -> None:
        """Apply a recorded delivery as the daemon does: parse, name the change, apply."""
        change = event_change(parse_event(delivery(number)["body"]))
        assert change is not None
        report = await self.engine.apply_change(self.settings.relations[0], change)
        assert report.error is None

    async def nothing_to_do(self) -> None:
        """A full read of NetBox and of the CMDB finds nothing to create or delete."""
        plan = await self.engine.plan_relation(self.settings.relations[0])
        assert plan.to_create == [] and plan.prune.delete == [] and not plan.owned_absent


@asynccontextmanager
async def world(
    tmp_path: Path,
    cables: list[dict[str, Any]],
    prune: bool = True,
    existing: tuple[tuple[int, int], ...] = (),
) -> AsyncIterator[World]:
    sim = Simulator(Fixture.from_dict(cmdb(existing=existing)), SimulatorOptions())
    netbox = StandIn(lists={CABLES: cables}, devices=devices(), cost_ms=0)
    async with serve_standin(netbox), sim.running(host="127.0.0.1", port=0) as url:
        settings = config(tmp_path, url, netbox.url, prune)
        async with engine_for(settings) as engine:
            report = await engine.cycle()
            assert report.ok
            yield World(sim, netbox, engine, settings)


def pairs(*hosts: int) -> set[tuple[int, int]]:
    return {(1, 1000 + h - SWITCH) for h in hosts}


async def test_recorded_create_delete_and_move_reach_the_cmdb_each_alone(tmp_path: Path) -> None:
    # Before: cable 11 from sw-wh-01 to srv-wh-002 (delivery 019 is its old end).
    async with world(tmp_path, [cable_row(11, 10)]) as w:
        assert w.sim.pairs(ASST) == pairs(10)
        requests = w.netbox.list_requests
        # 001-003: cable 10 created (sw-wh-01 -> srv-wh-001), then its two ends.
        w.cables.append(json.loads(delivery("001")["body"])["data"])
        with capture_logs() as logs:
            for number in ("001", "002", "003"):
                await w.deliver(number)
        assert w.sim.pairs(ASST) == pairs(10, 9)
        created = [p for p in pair_lines(logs) if p["outcome"] == "created"]
        assert len(created) == 1  # the interface deliveries found it already there
        # Only what the deliveries named was read: three cable reads, never the whole list.
        assert w.netbox.list_requests - requests == 3
        await w.nothing_to_do()
        # 016-018: cable 10 deleted; pruning is on and syncd created the pair: it goes.
        w.cables[:] = [c for c in w.cables if c["id"] != 10]
        for number in ("016", "017", "018"):
            await w.deliver(number)
        assert w.sim.pairs(ASST) == pairs(10)
        await w.nothing_to_do()
        # 019-021: cable 11's B end moves from srv-wh-002 to srv-wh-006.
        w.cables[:] = [json.loads(delivery("021")["body"])["data"]]
        for number in ("019", "020", "021"):
            await w.deliver(number)
        assert w.sim.pairs(ASST) == pairs(14)
        await w.nothing_to_do()


async def test_a_cable_only_event_rule_is_enough_for_a_move(tmp_path: Path) -> None:
    """The cable delivery alone (no interface deliveries) carries the move: the old end
    comes from the record index, the new one from the read."""
    async with world(tmp_path, [cable_row(11, 10)]) as w:
        w.cables[:] = [json.loads(delivery("021")["body"])["data"]]
        await w.deliver("021")
        assert w.sim.pairs(ASST) == pairs(14)
        await w.nothing_to_do()


async def test_two_cables_one_pair_the_pair_stays_until_both_go(tmp_path: Path) -> None:
    async with world(tmp_path, [cable_row(10, 9, port=1), cable_row(12, 9, port=2)]) as w:
        assert w.sim.pairs(ASST) == pairs(9)
        w.cables[:] = [c for c in w.cables if c["id"] != 10]
        await w.engine.apply_change(w.settings.relations[0], Change(cables=frozenset({10})))
        assert w.sim.pairs(ASST) == pairs(9)  # cable 12 still gives it
        w.cables.clear()
        await w.engine.apply_change(w.settings.relations[0], Change(cables=frozenset({12})))
        assert w.sim.pairs(ASST) == set()
        await w.nothing_to_do()


async def test_a_foreign_pair_is_never_deleted_by_a_change(tmp_path: Path) -> None:
    """A pair someone else created is known, not owned: a cable's deletion leaves it."""
    async with world(tmp_path, [], existing=((1, 1001),)) as w:
        foreign = w.sim.pairs(ASST)
        assert foreign == pairs(9)
        w.cables.append(cable_row(10, 9))
        await w.engine.apply_change(w.settings.relations[0], Change(cables=frozenset({10})))
        w.cables.clear()
        await w.engine.apply_change(w.settings.relations[0], Change(cables=frozenset({10})))
        assert w.sim.pairs(ASST) == foreign


async def test_a_device_change_reads_its_cables_and_a_deleted_device_takes_its_pairs(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, [cable_row(10, 9), cable_row(11, 10, port=2)]) as w:
        assert w.sim.pairs(ASST) == pairs(9, 10)
        # srv-wh-001 renamed in NetBox to srv-wh-003: its pair follows the name.
        w.netbox.devices[9] = {**w.netbox.devices[9], "name": "srv-wh-003"}
        await w.engine.apply_change(w.settings.relations[0], Change(devices=frozenset({9})))
        assert w.sim.pairs(ASST) == {(1, 1003), (1, 1002)}
        # srv-wh-002 deleted: NetBox deletes its cables with it.
        w.cables[:] = [c for c in w.cables if c["id"] != 11]
        del w.netbox.devices[10]
        await w.engine.apply_change(w.settings.relations[0], Change(devices=frozenset({10})))
        assert w.sim.pairs(ASST) == {(1, 1003)}
        await w.nothing_to_do()


async def test_without_pruning_a_deleted_cable_leaves_its_pair(tmp_path: Path) -> None:
    async with world(tmp_path, [cable_row(10, 9)], prune=False) as w:
        w.cables.clear()
        await w.engine.apply_change(w.settings.relations[0], Change(cables=frozenset({10})))
        assert w.sim.pairs(ASST) == pairs(9)


async def test_a_failed_read_is_an_error_and_changes_nothing(tmp_path: Path) -> None:
    async with world(tmp_path, [cable_row(11, 10)]) as w:
        w.cables.append(cable_row(10, 9))
        w.netbox.fail_requests = {w.netbox.list_requests + 1}
        with capture_logs() as logs:
            report = await w.engine.apply_change(
                w.settings.relations[0], Change(cables=frozenset({10}))
            )
        assert report.error is not None and "500" in report.error
        assert [line["event"] for line in logs].count("relation_failed") == 1
        assert w.sim.pairs(ASST) == pairs(10)
        # The index did not take the change: the same change applied again creates it.
        report = await w.engine.apply_change(
            w.settings.relations[0], Change(cables=frozenset({10}))
        )
        assert report.error is None and w.sim.pairs(ASST) == pairs(10, 9)


async def test_no_full_read_yet_is_uncertain(tmp_path: Path) -> None:
    sim = Simulator(Fixture.from_dict(cmdb()), SimulatorOptions())
    netbox = StandIn(lists={CABLES: []}, devices=devices(), cost_ms=0)
    async with serve_standin(netbox), sim.running(host="127.0.0.1", port=0) as url:
        settings = config(tmp_path, url, netbox.url)
        async with engine_for(settings) as engine:
            with pytest.raises(ChangeUncertain, match="no full NetBox read"):
                await engine.apply_change(settings.relations[0], Change(cables=frozenset({1})))


async def test_a_relation_with_several_sources_is_read_in_full(tmp_path: Path) -> None:
    """The index holds one NetBox read; a relation that also reads a file cannot be
    changed from NetBox alone: uncertain, the caller reads it in full."""
    sim = Simulator(Fixture.from_dict(cmdb()), SimulatorOptions())
    netbox = StandIn(lists={CABLES: [cable_row(10, 9)]}, devices=devices(), cost_ms=0)
    async with serve_standin(netbox), sim.running(host="127.0.0.1", port=0) as url:
        settings = config(tmp_path, url, netbox.url)
        topo = tmp_path / "lab.csv"
        topo.write_text("bk_inst_id,bk_asst_inst_id\nsw-wh-01,srv-wh-005\n", encoding="utf-8")
        cfg = tmp_path / "syncd.toml"
        text = cfg.read_text("utf-8")
        start = text.index("source = {")
        line = text[start : text.index("\n", start)]
        both = f'sources = [{line.removeprefix("source = ")}, {{ type = "file", path = "{topo}" }}]'
        cfg.write_text(text.replace(line, both), encoding="utf-8")
        settings = load(cfg)
        async with engine_for(settings) as engine:
            assert (await engine.cycle()).ok
            assert sim.pairs(ASST) == pairs(9, 13)
            with pytest.raises(ChangeUncertain):
                await engine.apply_change(settings.relations[0], Change(cables=frozenset({10})))


async def test_a_rename_the_cmdb_does_not_know_yet_keeps_the_old_pair(tmp_path: Path) -> None:
    """Never prune on uncertainty: srv-wh-001 renamed in NetBox to a name the CMDB does not
    have. The fact still states a cable; its target did not resolve, so every pair of the
    switch it could mean stays (Reconciler.may_delete), nothing is deleted."""
    async with world(tmp_path, [cable_row(10, 9)]) as w:
        w.netbox.devices[9] = {**w.netbox.devices[9], "name": "srv-wh-renamed"}
        with capture_logs() as logs:
            report = await w.engine.apply_change(
                w.settings.relations[0], Change(devices=frozenset({9}))
            )
        assert report.error is None and report.deleted == 0
        assert w.sim.pairs(ASST) == pairs(9)
        assert [line["event"] for line in logs].count("prune_kept") == 1
        assert [p["key"] for p in pair_lines(logs) if p["outcome"] == "unresolved"] == [
            "srv-wh-renamed"
        ]


async def test_prune_at_once_off_records_the_absence_for_the_cycle(tmp_path: Path) -> None:
    async with world(tmp_path, [cable_row(10, 9), cable_row(11, 10, port=2)]) as w:
        w.engine.changes.prune_at_once = False
        w.cables[:] = [c for c in w.cables if c["id"] != 10]
        with capture_logs() as logs:
            report = await w.engine.apply_change(
                w.settings.relations[0], Change(cables=frozenset({10}))
            )
        assert report.deleted == 0 and report.absent == 1
        assert w.sim.pairs(ASST) == pairs(9, 10)
        assert "prune_waiting" in [line["event"] for line in logs]
        await w.engine.cycle()  # the cycle's grace (0 s, 1 cycle here) decides
        assert w.sim.pairs(ASST) == pairs(10)


async def test_a_move_under_1_n_is_left_to_the_cycle(tmp_path: Path) -> None:
    """Under 1:n a host has one switch: the new pair is blocked by the old one until it is
    deleted, which the cycle's move logic decides; the change is uncertain."""
    doc = cmdb()
    doc["objects"]["bk_switch"].append({"bk_inst_id": 2, "bk_inst_name": "sw-wh-02"})
    doc["model_associations"][0]["mapping"] = "1:n"
    sim = Simulator(Fixture.from_dict(doc), SimulatorOptions())
    two = {**devices(), 7: {"id": 7, "name": "sw-wh-02", "role": {"slug": "switch"}}}
    netbox = StandIn(lists={CABLES: [cable_row(10, 9)]}, devices=two, cost_ms=0)
    async with serve_standin(netbox), sim.running(host="127.0.0.1", port=0) as url:
        settings = config(tmp_path, url, netbox.url)
        async with engine_for(settings) as engine:
            assert (await engine.cycle()).ok and sim.pairs(ASST) == pairs(9)
            moved = cable_row(10, 9)
            moved["a_terminations"][0]["object"]["device"] = {"id": 7, "name": "sw-wh-02"}
            netbox.lists[CABLES][:] = [moved]
            with pytest.raises(ChangeUncertain, match="blocked"):
                await engine.apply_change(settings.relations[0], Change(cables=frozenset({10})))
            assert sim.pairs(ASST) == pairs(9)  # nothing was touched
            await engine.cycle()  # the full read the caller asks for moves it
            assert sim.pairs(ASST) == {(2, 1001)}
