"""Property: after any sequence of webhooks, each applied at once, a full read finds nothing to do.

Random NetBox histories (cables created, deleted, moved to another server, doubled
between the same ends, servers renamed) are applied one delivery at a time through the
engine's incremental entry point, against a loopback NetBox stand-in and the simulator.
At the end the CMDB holds exactly the pairs NetBox gives, and a plan over a full read of
both has nothing to create and nothing to prune.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental import CABLES, SWITCH, World, cable_row, world

from syncd.engine.change import Change

SERVERS = list(range(SWITCH + 1, SWITCH + 13))  # devices 9..20, named srv-wh-001..012
Op = tuple[str, int, int]

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "delete", "move", "double", "rename"]),
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    max_size=12,
)


async def _apply(w: World, op: Op, next_id: list[int], names_free: list[int]) -> Change | None:
    kind, a, b = op
    cables = w.cables
    if kind == "add":
        next_id[0] += 1
        cables.append(cable_row(next_id[0], SERVERS[a % len(SERVERS)], port=next_id[0]))
        return Change(cables=frozenset({next_id[0]}))
    if not cables and kind != "rename":
        return None
    if kind == "delete":
        gone = cables.pop(a % len(cables))
        return Change(cables=frozenset({gone["id"]}))
    if kind == "move":
        row = cables[a % len(cables)]
        row["b_terminations"][0]["object"]["device"] = {
            "id": (d := SERVERS[b % len(SERVERS)]),
            "name": w.netbox.devices[d]["name"],
        }
        return Change(cables=frozenset({row["id"]}))
    if kind == "double":
        row = cables[a % len(cables)]
        host = row["b_terminations"][0]["object"]["device"]["id"]
        next_id[0] += 1
        cables.append(cable_row(next_id[0], host, port=next_id[0]))
        return Change(cables=frozenset({next_id[0]}))
    # rename: a server takes a name no other device has (the CMDB has it too)
    if not names_free:
        return None
    device = SERVERS[a % len(SERVERS)]
    name = f"srv-wh-{names_free.pop():03d}"
    w.netbox.devices[device] = {**w.netbox.devices[device], "name": name}
    for row in cables:
        end = row["b_terminations"][0]["object"]["device"]
        if end["id"] == device:
            end["name"] = w.netbox.devices[device]["name"]
    return Change(devices=frozenset({device}))


async def _history(history: list[Op], tmp: Path) -> None:
    start = [cable_row(1, SERVERS[0]), cable_row(2, SERVERS[1], port=2)]
    async with world(tmp, start) as w:
        next_id, names_free = [100], list(range(21, 41))
        for op in history:
            change = await _apply(w, op, next_id, names_free)
            if change is None:
                continue
            report = await w.engine.apply_change(w.settings.relations[0], change)
            assert report.error is None
        expected = set()
        for row in w.netbox.lists[CABLES]:
            name = w.netbox.devices[row["b_terminations"][0]["object"]["device"]["id"]]["name"]
            expected.add((1, 1000 + int(name.removeprefix("srv-wh-"))))
        assert w.sim.pairs("bk_switch_connect_host") == expected
        await w.nothing_to_do()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_any_sequence_of_webhooks_leaves_nothing_for_a_full_read(history: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_history(history, Path(tmp)))
