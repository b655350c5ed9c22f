"""KeyResolver against the CMDB simulator over loopback HTTP, behind both gateways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import CmdbSettings
from syncd.engine.resolver import KeyResolver, KeySpec

SWITCH_NAME = KeySpec("bk_switch", "bk_inst_name")
HOST_IP = KeySpec("host", "bk_host_innerip")
HOST_NAME = KeySpec("host", "bk_host_name")


def cmdb_fixture() -> dict[str, Any]:
    """sw-a..sw-d = 1..4, srv-01..srv-07 = 1001..1007 (srv-06 missing), two hosts named alike,
    and ranges: bk_switch 100..1299 named ``bk_switch-N``, hosts 5000..6199 named ``host-N``."""
    hosts = [
        {
            "bk_host_id": 1000 + i,
            "bk_host_name": f"srv-{i:02d}",
            "bk_host_innerip": f"198.51.100.{10 + i}",
        }
        for i in range(1, 8)
        if i != 6
    ]
    hosts += [
        {"bk_host_id": 1100, "bk_host_name": "dup-host", "bk_host_innerip": "10.9.9.1"},
        {"bk_host_id": 1101, "bk_host_name": "dup-host", "bk_host_innerip": "10.9.9.2,10.9.9.3"},
    ]
    return {
        "apps": [{"bk_app_code": "syncd", "bk_app_secret": "s3cret-app"}],
        "objects": {
            "bk_switch": [
                {"bk_inst_id": i, "bk_inst_name": name, "bk_mgmt_ip": f"192.0.2.{i}"}
                for i, name in enumerate(["sw-a", "sw-b", "sw-c", "sw-d"], start=1)
            ],
            "host": hosts,
        },
        "instance_ranges": {"bk_switch": [100, 1299], "host": [5000, 6199]},
        "model_associations": [
            {
                "bk_obj_asst_id": "bk_switch_connect_host",
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": "n:n",
            }
        ],
    }


def cmdb_settings(url: str, gateway: str, secret: str = "s3cret-app") -> CmdbSettings:
    return CmdbSettings(
        url=url,
        gateway=gateway,
        app_code="syncd",
        app_secret=SecretStr(secret),
        rate_limit=1000,
        concurrency=4,
        max_retries=0,
        retry_base=0.01,
        timeout=10,
    )


@pytest.fixture(params=["esb", "apigw"])
async def cmdb(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Simulator, CmdbClient]]:
    sim = Simulator(Fixture.from_dict(cmdb_fixture()), SimulatorOptions())
    async with (
        sim.running(host="127.0.0.1", port=0) as url,
        CmdbClient(cmdb_settings(url, request.param)) as client,
    ):
        yield sim, client


def api_calls(sim: Simulator, api: str) -> int:
    return int(sim.stats()["requests_by_api"].get(api, 0))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_bulk_over_500_values_is_chunked_and_paged(
    cmdb: tuple[Simulator, CmdbClient],
) -> None:
    sim, client = cmdb
    names = [f"bk_switch-{i}" for i in range(100, 1300)]  # 1200 keys
    res = await KeyResolver(client, ttl=300).resolve(SWITCH_NAME, [*names, "sw-a", "nope"])
    assert len(res.ids) == 1201 and res.ids["bk_switch-1299"] == 1299 and res.ids["sw-a"] == 1
    assert res.unresolved == {"nope"} and res.ambiguous == {}
    # 3 chunks of at most 500 values; a full page of 500 rows asks for the next page.
    assert api_calls(sim, "search_object_instances") == 5
    assert api_calls(sim, "list_hosts_without_biz") == 0


async def test_hosts_by_ip_and_name_unresolved_and_ambiguous(
    cmdb: tuple[Simulator, CmdbClient],
) -> None:
    sim, client = cmdb
    resolver = KeyResolver(client, ttl=300)
    by_ip = await resolver.resolve(HOST_IP, ["198.51.100.11", "198.51.100.16", "10.0.19.136"])
    assert by_ip.ids == {"198.51.100.11": 1001, "10.0.19.136": 5000}
    assert by_ip.unresolved == {"198.51.100.16"}  # srv-06 is not in the CMDB
    by_name = await resolver.resolve(HOST_NAME, ["srv-02", "dup-host", "host-6199"])
    assert by_name.ids == {"srv-02": 1002, "host-6199": 6199}
    assert by_name.ambiguous == {"dup-host": [1100, 1101]}  # both ids, no guess
    assert api_calls(sim, "list_hosts_without_biz") == 2
    assert api_calls(sim, "search_object_instances") == 0


async def test_multi_ip_host_matches_each_ip(cmdb: tuple[Simulator, CmdbClient]) -> None:
    _, client = cmdb
    res = await KeyResolver(client, ttl=300).resolve(HOST_IP, ["10.9.9.2,10.9.9.3"])
    assert res.ids == {"10.9.9.2,10.9.9.3": 1101}


async def test_ttl_cache_negative_ttl_and_invalidate(cmdb: tuple[Simulator, CmdbClient]) -> None:
    sim, client = cmdb
    clock = Clock()
    resolver = KeyResolver(client, ttl=300, clock=clock, negative_ttl=30)

    def calls() -> int:
        return api_calls(sim, "search_object_instances")

    await resolver.resolve(SWITCH_NAME, ["sw-a", "sw-b", "ghost"])
    assert calls() == 1
    res = await resolver.resolve(SWITCH_NAME, ["sw-a", "sw-b", "ghost"])
    assert calls() == 1 and res.ids == {"sw-a": 1, "sw-b": 2} and res.unresolved == {"ghost"}
    await resolver.resolve(SWITCH_NAME, ["sw-a", "sw-c"])  # only sw-c is asked
    assert calls() == 2
    clock.now += 31  # the negative entry expired, the positive ones did not
    before = resolver.lookups
    await resolver.resolve(SWITCH_NAME, ["sw-a", "ghost"])
    assert calls() == 3 and resolver.lookups == before + 1
    clock.now += 300
    await resolver.resolve(SWITCH_NAME, ["sw-a"])
    assert calls() == 4
    resolver.invalidate()
    await resolver.resolve(SWITCH_NAME, ["sw-a"])
    assert calls() == 5


async def test_id_keys_need_no_lookup(cmdb: tuple[Simulator, CmdbClient]) -> None:
    sim, client = cmdb
    res = await KeyResolver(client, ttl=300).resolve(KeySpec("host"), ["1001", " 42 ", "x"])
    assert res.ids == {"1001": 1001, " 42 ": 42} and res.unresolved == {"x"}
    assert sim.stats()["requests"] == 0


@pytest.mark.parametrize("gateway", ["esb", "apigw"])
async def test_cmdb_refusal_raises_cmdb_error(gateway: str) -> None:
    sim = Simulator(Fixture.from_dict(cmdb_fixture()), SimulatorOptions())
    async with (
        sim.running(host="127.0.0.1", port=0) as url,
        CmdbClient(cmdb_settings(url, gateway, secret="wrong-secret")) as client,
    ):
        with pytest.raises(CmdbError, match="search_object_instances") as err:
            await KeyResolver(client, ttl=300).resolve(SWITCH_NAME, ["sw-a"])
    assert "wrong-secret" not in str(err.value)
