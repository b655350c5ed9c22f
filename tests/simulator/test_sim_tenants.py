"""bk-cmdb 3.15, the multi-tenant line: the tenant checks, their order and answers, and
each tenant's own data (/work/shared/docs/bk-cmdb-audit-2.md, section C).

Paths are in bk-cmdb at ``release-v3.15.1`` unless prefixed ``apisix/``
(blueking-apigateway-apisix src/apisix/plugins/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sim_client import APP, CONNECT, Cmdb, fixture_doc

from cmdb_simulator import Fixture, FixtureError, Simulator, SimulatorOptions
from cmdb_simulator.chain import NO_EVENT_CURSOR

ACME, UMBRELLA = "acme", "umbrella"
GLOBAL = {"bk_app_code": "platform", "bk_app_secret": "platform-secret"}
COUNT = "/api/v3/count/instance_associations/object/bk_switch"
SEARCH = "/api/v3/search/instance_associations/object/bk_switch"


def tenant_doc() -> dict[str, Any]:
    """Tenants acme and umbrella (and a disabled one); syncd's app belongs to acme,
    ``platform`` is an all-tenant app."""
    doc = fixture_doc()
    doc["tenants"] = [ACME, UMBRELLA, {"bk_tenant_id": "gone", "enabled": False}]
    doc["apps"] = [
        APP | {"tenant_id": ACME},
        GLOBAL | {"tenant_mode": "global"},
        {"bk_app_code": "old", "bk_app_secret": "old-secret", "tenant_id": "gone"},
    ]
    return doc


async def _cmdb(doc: dict[str, Any], **options: Any) -> AsyncIterator[Cmdb]:
    opts = SimulatorOptions(cmdb_version=options.pop("version", "3.15"), **options)
    sim = Simulator(Fixture.from_dict(doc), opts)
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)


@pytest.fixture
async def mt() -> AsyncIterator[Cmdb]:
    async for cmdb in _cmdb(tenant_doc()):
        yield cmdb


def _as(app: dict[str, str]) -> dict[str, str]:
    return app | {"bk_username": "admin"}


def _tenant(tenant: str | None) -> dict[str, str]:
    return {} if tenant is None else {"X-Bk-Tenant-Id": tenant}


def _batch(pairs: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": CONNECT,
        "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in pairs],
    }


async def test_single_tenant_app_gets_its_own_tenant_and_no_other(mt: Cmdb) -> None:
    """bk-tenant-validate: a single-tenant app that sends no header gets its own tenant
    (apisix/bk-tenant-validate.lua:172-178); another tenant's id is 403 1640302
    CROSS_TENANT_FORBIDDEN (:93-102, apisix/bk-core/errorx.lua:197-207)."""
    assert (await mt.gw("POST", COUNT, {})).doc["data"] == {"count": 1}
    own = await mt.gw("POST", COUNT, {}, headers=_tenant(ACME))
    assert own.doc["data"] == {"count": 1}
    cross = await mt.gw("POST", COUNT, {}, headers=_tenant(UMBRELLA))
    assert cross.status == 403
    assert cross.doc == {
        "result": False,
        "code": 1640302,
        "code_name": "CROSS_TENANT_FORBIDDEN",
        "message": 'Cross tenant forbidden [reason="Cross-tenant calls are not allowed: '
        "current header X-Bk-Tenant-Id=umbrella, app syncd belongs to tenant "
        'acme(tenant_mode=single). [AH2]"]',
        "data": None,
    }
    assert cross.headers["X-Bkapi-Error-Code"] == "1640302"


async def test_all_tenant_app_must_name_the_tenant(mt: Cmdb) -> None:
    """A global app without ``X-Bk-Tenant-Id`` is refused by the gateway
    (apisix/bk-tenant-validate.lua:79-90, ``[AH1]``); with one it passes on, and the API
    server's TenantVerify checks it exists and is enabled (src/apiserver/service/
    filter.go:522-554): otherwise BaseResp 1100005 ``invalid tenant``
    (src/common/errInfo.go:266), written by the filter, so ``bk_error_code`` and no
    ``data`` behind the gateway."""
    missing = await mt.gw("POST", COUNT, {}, auth=_as(GLOBAL))
    assert (missing.status, missing.doc["code"]) == (403, 1640302)
    assert missing.doc["message"].endswith('the app platform tenant_mode=global. [AH1]"]')
    ok = await mt.gw("POST", COUNT, {}, auth=_as(GLOBAL), headers=_tenant(UMBRELLA))
    assert ok.doc["data"] == {"count": 1}
    for tenant in ("nosuch", "gone"):
        bad = await mt.gw("POST", COUNT, {}, auth=_as(GLOBAL), headers=_tenant(tenant))
        assert bad.status == 200
        assert bad.doc == {"result": False, "bk_error_code": 1100005,
                           "bk_error_msg": "invalid tenant", "permission": None}  # fmt: skip
    old = {"bk_app_code": "old", "bk_app_secret": "old-secret"}
    disabled = await mt.gw("POST", COUNT, {}, auth=_as(old))
    assert disabled.doc["bk_error_code"] == 1100005


async def test_filter_order_gateway_then_limiter_then_tenant_then_auth(mt: Cmdb) -> None:
    """The gateway's tenant check (rewrite phase, priority 17674) comes before its
    concurrency (17660) and rate (17653) limits; in the API server the limiter comes
    before TenantVerify (src/apiserver/service/service.go:105-110), which comes before
    the auth filter's parse and IAM."""
    mt.sim.options.rate_limit = 1
    cross = [(await mt.gw("POST", COUNT, {}, headers=_tenant(UMBRELLA))).status for _ in range(3)]
    assert cross == [403, 403, 403]  # refused before the rate limit counted them
    assert (await mt.gw("POST", COUNT, {})).status == 200
    mt.sim.options.rate_limit = None
    mt.sim.options.fault_rate, mt.sim.options.fault_kinds = 1.0, ("cmdb-busy",)
    busy = await mt.gw("POST", COUNT, {}, auth=_as(GLOBAL), headers=_tenant("nosuch"))
    assert busy.doc["bk_error_code"] == 1199997  # the limiter first
    mt.sim.options.fault_rate = 0.0
    body = _batch([(2, 103)]) | {"bk_obj_asst_id": "nope"}
    path = "/api/v3/createmany/instassociation"
    unknown = await mt.gw("POST", path, body, auth=_as(GLOBAL), headers=_tenant("nosuch"))
    assert unknown.doc["bk_error_code"] == 1100005  # not the auth parse's 1199045
    parse = await mt.gw("POST", path, body, auth=_as(GLOBAL), headers=_tenant(ACME))
    assert parse.doc["bk_error_code"] == 1199045


async def test_esb_sends_no_tenant(mt: Cmdb) -> None:
    """The ESB's CC component sends no tenant header (esb/components/bk/apisv2/cc/toolkit/
    tools.py:40-51), whatever the caller sent: in multi-tenant mode every ESB call is
    1100005 (src/apiserver/service/filter.go:522-554)."""
    answer = await mt.esb("count_instance_associations", {"bk_obj_id": "bk_switch"},
                          headers=_tenant(ACME))  # fmt: skip
    assert (answer.doc["code"], answer.doc["message"], answer.doc["data"]) == (
        1100005,
        "invalid tenant",
        None,
    )


async def test_a_pair_made_in_one_tenant_is_invisible_in_another(mt: Cmdb) -> None:
    """Tables are sharded per tenant (cs/event/watch/client.go:66,87,153-155): rows, counts
    and watch events of one tenant are not another's; association ids come from one
    system-wide sequence (core/instance.go:158-160); rows carry no
    ``bk_supplier_account`` (src/common/metadata/association.go:542-559)."""
    path = "/api/v3/createmany/instassociation"
    made = await mt.gw("POST", path, _batch([(2, 103)]))
    # The fixture's pair took ids 1, 2, 3 in the three tenants.
    assert made.doc["data"]["success_created"] == {"0": 4}
    umbrella = mt.sim.tenant(UMBRELLA).store
    acme = mt.sim.tenant(ACME).store
    assert acme.pairs(CONNECT) == {(1, 101), (2, 103)}
    assert umbrella.pairs(CONNECT) == {(1, 101)}  # the fixture's pair, its own copy
    page = {"page": {"start": 0, "limit": 10, "sort": "id"}}
    theirs = await mt.gw("POST", SEARCH, page, auth=_as(GLOBAL), headers=_tenant(UMBRELLA))
    assert [r["bk_inst_id"] for r in theirs.doc["data"]["info"]] == [1]
    ours = await mt.gw("POST", SEARCH, page)
    rows = ours.doc["data"]["info"]
    assert [r["bk_inst_id"] for r in rows] == [1, 2]
    assert all("bk_supplier_account" not in r for r in rows)
    watch = "/api/v3/event/watch/resource/inst_asst"
    body = {"bk_cursor": NO_EVENT_CURSOR}
    mine = (await mt.gw("POST", watch, body)).doc["data"]
    assert [e["bk_event_type"] for e in mine["bk_events"]] == ["create", "create"]
    assert "bk_supplier_account" not in mine["bk_events"][0]["bk_detail"]
    mt.sim.options.watch_timeout_s = 0.1
    other = await mt.gw("POST", watch, body, auth=_as(GLOBAL), headers=_tenant(UMBRELLA))
    assert other.doc["data"]["bk_watched"] is False
    # A delete by id from another tenant finds nothing there.
    assert [r["id"] for r in theirs.doc["data"]["info"]] == [2]
    delete = {"bk_obj_id": "bk_switch", "id": [1, 4]}
    await mt.gw("DELETE", "/api/v3/delete/instassociation/batch", delete, auth=_as(GLOBAL),
                headers=_tenant(UMBRELLA))  # fmt: skip
    assert acme.pairs(CONNECT) == {(1, 101), (2, 103)}
    models = await mt.gw("POST", "/api/v3/find/objectassociation",
                         {"condition": {"bk_obj_asst_id": CONNECT}})  # fmt: skip
    assert "bk_supplier_account" not in models.doc["data"][0]


async def test_single_tenant_mode_is_tenant_default() -> None:
    """Multi-tenant mode off: a gateway that is not multi-tenant sets ``default``
    whatever was sent (apisix/bk-default-tenant.lua:40-43), ``ValidateDisableTenantMode``
    takes ``""`` and ``default`` as ``default`` (pkg/tenant/tools/tenant.go:41-51), and
    the ESB works."""
    async for cmdb in _cmdb(fixture_doc()):
        for headers in ({}, _tenant("default"), _tenant("acme")):
            answer = await cmdb.gw("POST", COUNT, {}, headers=headers)
            assert answer.doc["data"] == {"count": 1}
        esb = await cmdb.esb("count_instance_associations", {"bk_obj_id": "bk_switch"})
        assert esb.doc["data"] == {"count": 1}
        [row] = cmdb.sim.associations(CONNECT)
        assert "bk_supplier_account" not in row


async def test_releases_before_3_15_ignore_the_tenant() -> None:
    """Before 3.15 there is no tenant header (src/common/http/header/header.go at master
    has only ``X-Bkcmdb-Supplier-Account``): the tenants' data is not consulted and rows
    keep ``bk_supplier_account``."""
    async for cmdb in _cmdb(tenant_doc(), version="3.14"):
        answer = await cmdb.gw("POST", SEARCH, {"page": {"start": 0, "limit": 10}},
                               headers=_tenant("nosuch"))  # fmt: skip
        assert answer.doc["data"]["info"][0]["bk_supplier_account"] == "0"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(tenants=[]), "tenants"),
        (lambda d: d.update(tenants=["a", "a"]), "tenants[1].bk_tenant_id"),
        (lambda d: d.update(tenants=[{"bk_tenant_id": "a", "enabled": "yes"}]),
         "tenants[0].enabled"),
        (lambda d: d["apps"][0].update(tenant_id="nosuch"), "apps[0].tenant_id"),
        (lambda d: d["apps"][0].update(tenant_mode="all"), "apps[0].tenant_mode"),
    ],
)  # fmt: skip
def test_fixture_tenants_are_checked(change: Any, key: str) -> None:
    doc = tenant_doc()
    change(doc)
    with pytest.raises(FixtureError) as info:
        Fixture.from_dict(doc)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("args", "status"),
    [(["--cmdb-version", "3.15.1"], 0), (["--cmdb-version", "3.16"], 78),
     (["--cmdb-version", "3.15.x"], 78), (["--rate-limit", "fast"], 78)],
)  # fmt: skip
def test_cli_takes_3_15_and_a_bad_option_exits_78(
    tmp_path: Path, args: list[str], status: int
) -> None:
    """docs/simulator.md: a bad fixture or option exits 78."""
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps(tenant_doc()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmdb_simulator", "--fixture", str(fixture), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if status == 0:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["event"] == "simulator_listening"
            proc.terminate()
        assert proc.wait(timeout=30) == status
    finally:
        proc.kill()
        proc.wait()
    if status:
        assert proc.stderr is not None and "error" in proc.stderr.read()


def test_instances_added_at_runtime_reach_every_tenant() -> None:
    sim = Simulator(Fixture.from_dict(tenant_doc()), SimulatorOptions(cmdb_version="3.15"))
    sim.add_instances("host", [{"bk_host_id": 999, "bk_host_innerip": "10.9.9.9"}])
    assert all(sim.tenant(t).store.instance_exists("host", 999) for t in ("acme", "umbrella"))
    assert sim.stats()["associations"] == 3  # the fixture's pair, once per tenant
