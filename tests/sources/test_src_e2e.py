"""NetBox-shaped recorded data -> NetBoxSource -> KeyResolver against the simulator -> id pairs."""

from __future__ import annotations

import pytest
from src_helpers import read_all, replay_netbox
from test_src_resolver import cmdb_fixture, cmdb_settings

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient
from syncd.engine.resolver import KeyResolver, KeySpec
from syncd.sources.netbox import NetBoxSource
from syncd.sources.settings import NetBoxSourceSettings


async def resolved_pairs(
    scenario: str, gateway: str, switch: KeySpec, host: KeySpec, **fields: object
) -> tuple[set[tuple[int, int]], set[str], dict[str, list[int]]]:
    sim = Simulator(Fixture.from_dict(cmdb_fixture()), SimulatorOptions())
    async with (
        replay_netbox(scenario) as nb,
        sim.running(host="127.0.0.1", port=0) as cmdb_url,
        CmdbClient(cmdb_settings(cmdb_url, gateway)) as client,
    ):
        settings = NetBoxSourceSettings.model_validate(
            {"type": "netbox", "url": nb.url, "token": "t" * 40, **fields}
        )
        facts = await read_all(NetBoxSource(settings, name="switch-host"))
        resolver = KeyResolver(client, ttl=300)
        sw = await resolver.resolve(switch, sorted({str(f[0]) for f in facts}))
        hs = await resolver.resolve(host, sorted({str(f[1]) for f in facts}))
    pairs = {
        (sw.ids[str(s)], hs.ids[str(d)])
        for s, d, _ in facts
        if str(s) in sw.ids and str(d) in hs.ids
    }
    return pairs, sw.unresolved | hs.unresolved, {**sw.ambiguous, **hs.ambiguous}


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_cables_by_name_resolve_to_ids(gateway: str) -> None:
    pairs, unresolved, ambiguous = await resolved_pairs(
        "cables_dc1",
        gateway,
        KeySpec("bk_switch", "bk_inst_name"),
        KeySpec("host", "bk_host_name"),
        mode="cables",
        site=["dc1"],
        page_size=4,
    )
    assert pairs == {
        (1, 1001),
        (1, 1002),
        (2, 1002),
        (2, 1003),
        (3, 1004),
        (3, 1005),
        (3, 1003),
    }
    assert unresolved == {"srv-06"}  # in NetBox, not in the CMDB: reported, retried later
    assert ambiguous == {}


async def test_primary_ips_resolve_to_ids() -> None:
    pairs, unresolved, _ = await resolved_pairs(
        "cables_all_ip",
        "apigw",
        KeySpec("bk_switch", "bk_mgmt_ip"),
        KeySpec("host", "bk_host_innerip"),
        mode="cables",
        page_size=5,
        switch_key="primary_ip",
        host_key="primary_ip4",
    )
    # srv-06 has no primary IP in NetBox: the source skips it, so nothing is unresolved.
    assert pairs == {
        (1, 1001),
        (1, 1002),
        (2, 1002),
        (2, 1003),
        (3, 1004),
        (3, 1005),
        (3, 1003),
        (4, 1007),
    }
    assert unresolved == set()
