"""syncd on a multi-tenant CMDB (bk-cmdb 3.15): ``cmdb.tenant_id`` on the wire, the
start-up and relation-level refusals that name it, and a tenant's data kept apart."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cmdb_simulator import Fixture, Simulator, SimulatorOptions
from syncd.cmdb import apis
from syncd.cmdb.gateway import describe, frame
from syncd.config.settings import EX_CONFIG, ConfigError, Settings
from syncd.core.answer import Verdict, classify_response
from syncd.state import StateStore
from tests.helpers import (
    ASST,
    Proc,
    Ran,
    fixture_dict,
    load,
    run_cycle,
    run_syncd,
    start_simulator,
    write_config,
    write_csv,
)

ACME, UMBRELLA = "acme", "umbrella"
PAIRS = [(s, 1000 + h) for s in range(1, 6) for h in range(1, 41)]  # 200 pairs


def tenant_fixture(*, app_mode: str = "single") -> dict[str, Any]:
    """Tenants acme and umbrella; syncd's app is acme's (or an all-tenant app)."""
    doc = fixture_dict(switches=10, hosts=100)
    doc["tenants"] = [ACME, UMBRELLA]
    app = doc["apps"][0]
    app.update(tenant_mode="global") if app_mode == "global" else app.update(tenant_id=ACME)
    return doc


def _config(tmp_path: Path, url: str, *, gateway: str = "apigw", tenant: str | None) -> Settings:
    extra = "" if tenant is None else f'tenant_id = "{tenant}"'
    topo = write_csv(tmp_path / "t.csv", PAIRS)
    return load(write_config(tmp_path, url, topo, gateway=gateway, cmdb_extra=extra))


# -- on the wire ----------------------------------------------------------------------------


def test_the_tenant_replaces_the_supplier_account_on_the_api_gateway(tmp_path: Path) -> None:
    with_tenant = _config(tmp_path, "http://127.0.0.1:1", tenant=ACME).cmdb
    framed = frame(with_tenant, apis.BATCH_CREATE, {"details": []}, {})
    assert framed.headers["X-Bk-Tenant-Id"] == ACME
    assert "X-Bkcmdb-Supplier-Account" not in framed.headers
    assert b"bk_supplier_account" not in framed.body
    without = _config(tmp_path, "http://127.0.0.1:1", tenant=None).cmdb
    framed = frame(without, apis.BATCH_CREATE, {"details": []}, {})
    assert framed.headers["X-Bkcmdb-Supplier-Account"] == "0"
    assert "X-Bk-Tenant-Id" not in framed.headers
    esb = _config(tmp_path, "http://127.0.0.1:1", gateway="esb", tenant=None).cmdb
    framed = frame(esb, apis.BATCH_CREATE, {"details": []}, {})
    assert json.loads(framed.body)["bk_supplier_account"] == "0"
    assert "X-Bk-Tenant-Id" not in framed.headers


def test_describe_says_what_identifies_the_tenant(tmp_path: Path) -> None:
    url = "https://user:pw@cmdb.example/"
    line = describe(_config(tmp_path, url, tenant=ACME).cmdb)
    assert "X-Bk-Tenant-Id: acme" in line and "3.15" in line and "pw" not in line
    line = describe(_config(tmp_path, url, tenant=None).cmdb)
    assert "X-Bkcmdb-Supplier-Account: 0" in line and "cmdb.tenant_id" in line
    line = describe(_config(tmp_path, url, gateway="esb", tenant=None).cmdb)
    assert "ESB" in line and "bk_supplier_account = '0'" in line


def test_a_tenant_on_the_esb_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'cmdb\.gateway is "esb".*X-Bk-Tenant-Id.*apigw'):
        _config(tmp_path, "http://127.0.0.1:1", gateway="esb", tenant=ACME)


@pytest.mark.parametrize("bad", ["", "acme\r\nX-Evil: 1", "a b", "-acme", "a" * 65, "租户"])
def test_a_tenant_id_that_could_break_a_header_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="tenant_id"):
        _config(tmp_path, "http://127.0.0.1:1", tenant=bad.replace("\r\n", "\\r\\n"))


@pytest.mark.parametrize(
    ("status", "doc"),
    [
        (200, {"result": False, "bk_error_code": 1100005, "bk_error_msg": "invalid tenant"}),
        (403, {"result": False, "code": 1640302, "code_name": "CROSS_TENANT_FORBIDDEN",
               "message": "Cross tenant forbidden", "data": None}),
    ],
)  # fmt: skip
def test_tenant_refusals_are_about_the_relation_and_name_the_setting(
    status: int, doc: dict[str, Any]
) -> None:
    answer = classify_response(status, {}, json.dumps(doc).encode())
    assert answer.verdict is Verdict.RELATION
    assert "cmdb.tenant_id" in answer.hint


def test_watch_cursors_are_kept_per_tenant(tmp_path: Path) -> None:
    store, _ = StateStore.open(tmp_path / "s.db")
    try:
        store.meta.set_watch_cursor("bk_switch", "c-plain")
        store.meta.set_watch_cursor("bk_switch", "c-acme", ACME)
        store.meta.set_watch_cursor("bk_switch", "c-umbrella", UMBRELLA)
        assert store.meta.watch_cursor("bk_switch") == "c-plain"
        assert store.meta.watch_cursor("bk_switch", ACME) == "c-acme"
        assert store.meta.watch_cursor("bk_switch", UMBRELLA) == "c-umbrella"
        store.meta.set_watch_cursor("bk_switch", None, ACME)
        assert store.meta.watch_cursor("bk_switch", ACME) is None
        assert store.meta.watch_cursor("bk_switch", UMBRELLA) == "c-umbrella"
        assert store.meta.watch_cursor("bk_switch", "other") is None
    finally:
        store.close()


# -- against the simulator answering as 3.15 -------------------------------------------------


def _sim(doc: dict[str, Any]) -> Simulator:
    return Simulator(Fixture.from_dict(doc), SimulatorOptions(cmdb_version="3.15"))


async def test_syncs_exactly_into_its_tenant_and_no_other(tmp_path: Path) -> None:
    sim = _sim(tenant_fixture())
    async with sim.running(host="127.0.0.1", port=0) as url:
        report, _ = await run_cycle(_config(tmp_path, url, tenant=ACME))
    assert report.converged and report.total("created") == len(PAIRS)
    assert sim.tenant(ACME).store.pairs(ASST) == set(PAIRS)
    assert sim.tenant(UMBRELLA).store.pairs(ASST) == set()
    assert sim.tenant(UMBRELLA).events.total == 0


@pytest.mark.parametrize(
    ("app_mode", "tenant", "code"),
    [
        ("single", UMBRELLA, 1640302),  # another tenant's id: the gateway refuses
        ("global", None, 1640302),  # an all-tenant app must name one
        ("global", "nosuch", 1100005),  # a tenant the CMDB does not have
    ],
)
async def test_a_wrong_or_missing_tenant_refuses_the_relation_saying_what_to_set(
    tmp_path: Path, app_mode: str, tenant: str | None, code: int
) -> None:
    sim = _sim(tenant_fixture(app_mode=app_mode))
    async with sim.running(host="127.0.0.1", port=0) as url:
        report, logs = await run_cycle(_config(tmp_path, url, tenant=tenant))
    assert not report.converged
    [refused] = [line for line in logs if line["event"] == "relation_refused"]
    assert f"code {code}" in refused["error"]
    assert "cmdb.tenant_id" in refused["fix"]
    assert all(sim.tenant(t).store.pairs(ASST) == set() for t in (ACME, UMBRELLA))
    assert sim.stats()["created_total"] == 0


@pytest.mark.slow
def test_syncd_once_and_check_config_on_a_3_15_cmdb(tmp_path: Path, procs: list[Proc]) -> None:
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(tenant_fixture()))
    url = start_simulator(procs, fixture, "--cmdb-version", "3.15.1", "--rate-limit", "100")
    topo = write_csv(tmp_path / "t.csv", PAIRS)
    cfg = write_config(tmp_path, url, topo, gateway="apigw", cmdb_extra=f'tenant_id = "{ACME}"')
    check = _syncd("check-config", cfg)
    assert check.code == 0, check.stderr
    assert "X-Bk-Tenant-Id: acme on every call" in check.stdout
    once = _syncd("once", cfg)
    assert once.code == 0, once.stderr
    lines = [json.loads(line) for line in once.stdout.splitlines()]
    [cycle] = [line for line in lines if line["event"] == "cycle"]
    assert cycle["created"] == len(PAIRS) and cycle["failed"] == 0
    esb_cfg = write_config(tmp_path, url, topo, gateway="esb", cmdb_extra=f'tenant_id = "{ACME}"')
    refused = _syncd("check-config", esb_cfg)
    assert refused.code == EX_CONFIG
    assert 'cmdb.gateway is "esb"' in refused.stderr and "1100005" in refused.stderr


def _syncd(command: str, cfg: Path) -> Ran:
    """The command through ``syncd.cli.main`` here: what is tested is the tenant, not the
    process."""
    return run_syncd(command, "--config", str(cfg))


def test_a_state_file_serves_one_tenant(tmp_path: Path) -> None:
    """Known pairs and their ownership are one tenant's: carried to another, a resync
    would keep the ownership of a pair that exists in both, and a prune could delete
    a pair syncd never made there."""
    store, _ = StateStore.open(tmp_path / "s.db")
    try:
        assert store.meta.tenant_mismatch(ACME) is None  # the first use records it
        assert store.meta.tenant_mismatch(ACME) is None
        other = store.meta.tenant_mismatch(UMBRELLA)
        assert other is not None and "'acme'" in other and "state.path" in other
        assert "without tenants" in (store.meta.tenant_mismatch(None) or "")
    finally:
        store.close()
    plain, _ = StateStore.open(tmp_path / "plain.db")
    try:
        assert plain.meta.tenant_mismatch(None) is None
        assert "'acme'" in (plain.meta.tenant_mismatch(ACME) or "")
    finally:
        plain.close()


@pytest.mark.slow
def test_another_tenant_is_never_synced_from_this_tenants_state(
    tmp_path: Path, procs: list[Proc]
) -> None:
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(tenant_fixture(app_mode="global")))
    url = start_simulator(procs, fixture, "--cmdb-version", "3.15", "--rate-limit", "off")
    topo = write_csv(tmp_path / "t.csv", PAIRS)
    prune = "\n[relations.prune]\nenabled = true\ngrace_seconds = 0\ngrace_cycles = 1\n"
    for tenant in (ACME, UMBRELLA):
        cfg = write_config(
            tmp_path, url, topo, gateway="apigw", cmdb_extra=f'tenant_id = "{tenant}"', extra=prune
        )
        once = _syncd("once", cfg)
        if tenant == ACME:
            assert once.code == 0, once.stderr
    assert once.code != 0
    assert "the state was made for tenant 'acme'" in once.stdout
    stats = json.loads(_get(f"{url}/_sim/stats"))
    assert stats["created_total"] == len(PAIRS)  # all in acme, none in umbrella
    assert stats["deleted_total"] == 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())
