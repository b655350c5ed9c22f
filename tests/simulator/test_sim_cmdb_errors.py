"""Refusals from inside the CMDB, in the envelope each path really sends.

IAM denials (9900403 with a ``permission`` object) and the API server's limiter
(``cmdb-busy``, 1199997) are written by the API server's filters: a bare BaseResp
(``bk_error_code``/``bk_error_msg``, no ``data``) behind the API gateway
(src/apiserver/service/filter.go:249-251,317-328,381-389). The core service's lock
failure (``core-busy``, 1113053, single create only) and the audit save failure
(``audit-fail``, 1109001) are proxied, so renamed to ``code``/``message`` there
(src/apiserver/service/http.go:145-183). ESB rewrites everything to
``result/code/data/message/permission`` (cc/toolkit/tools.py:93-123).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from sim_client import CONNECT, GATEWAYS, MANAGE, Answer, Cmdb, fixture_doc

from cmdb_simulator import (
    ALL_FAULT_KINDS,
    FAULT_KINDS,
    Fixture,
    FixtureError,
    Simulator,
    SimulatorOptions,
)
from cmdb_simulator import cli as sim_cli
from cmdb_simulator.envelope import code_of
from cmdb_simulator.fixture import DenyRule

RO = {"bk_app_code": "ro", "bk_app_secret": "ro-secret"}
"""May read, may not create or delete associations."""
NO_MANAGE = {"bk_app_code": "no-manage", "bk_app_secret": "nm-secret"}
"""May not create pairs of the 1:n relation, nor write anything touching bk_switch by delete."""
COUNT_PATH = "/api/v3/count/instance_associations/object/bk_switch"
SYSTEM = {"system_id": "bk_cmdb", "system_name": "配置平台"}


def deny_doc() -> dict[str, Any]:
    doc = fixture_doc()
    doc["apps"] += [
        RO | {"deny": ["batch_create_instance_association", "delete_related_inst_asso"]},
        NO_MANAGE
        | {
            "deny": [
                {"api": "batch_create_instance_association", "bk_obj_asst_id": MANAGE},
                {"api": "delete_related_inst_asso", "bk_obj_id": "host"},
            ]
        },
    ]
    return doc


@pytest.fixture
async def cmdb(options: SimulatorOptions) -> AsyncIterator[Cmdb]:
    # A copy: tests change options while running, and parametrized ones share the instance.
    sim = Simulator(Fixture.from_dict(deny_doc()), dataclasses.replace(options))
    async with sim.running(host="127.0.0.1", port=0) as url, aiohttp.ClientSession() as session:
        yield Cmdb(sim, url, session)


def batch_body(details: list[tuple[int, int]], asst: str = CONNECT) -> dict[str, Any]:
    return {
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": asst,
        "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in details],
    }


async def call_as(
    cmdb: Cmdb,
    gateway: str,
    app: Mapping[str, str],
    api: str,
    body: Mapping[str, Any],
    *,
    lang: str = "en",
) -> Answer:
    """One API as ``app``; ``delete_related_inst_asso`` and the batch create only."""
    creds = dict(app) | {"bk_username": "admin"}
    if gateway == "esb":
        return await cmdb.esb(api, body, creds=creds, lang=lang)
    path = {
        "batch_create_instance_association": ("POST", "/api/v3/createmany/instassociation"),
        "delete_related_inst_asso": ("DELETE", "/api/v3/delete/instassociation/batch"),
    }[api]
    return await cmdb.gw(*path, body, auth=creds, lang=lang)


def filter_doc(gateway: str, code: int, msg: str, permission: Any = None) -> dict[str, Any]:
    """An API-server filter's refusal as it arrives through ``gateway``."""
    if gateway == "esb":
        return {"result": False, "code": code, "data": None, "message": msg,
                "permission": permission}  # fmt: skip
    return {"result": False, "bk_error_code": code, "bk_error_msg": msg, "permission": permission}


def proxied_doc(gateway: str, code: int, msg: str) -> dict[str, Any]:
    """A scene/core server's refusal as it arrives through ``gateway``."""
    if gateway == "esb":
        return {"result": False, "code": code, "data": None, "message": msg, "permission": None}
    return {"result": False, "code": code, "message": msg, "permission": None, "data": None}


def body_of(answer: Answer, gateway: str) -> dict[str, Any]:
    """The answer's body without ESB's ``request_id`` (checked to be there)."""
    assert answer.status == 200
    doc = dict(answer.doc)
    if gateway == "esb":
        assert doc.pop("request_id")
    else:
        assert "request_id" not in doc and answer.headers["X-Bkapi-Request-ID"]
    return doc


def instance(rsc_type: str, type_name: str, inst_id: int, name: str) -> list[dict[str, str]]:
    return [{"type": rsc_type, "type_name": type_name, "id": str(inst_id), "name": name}]


# --- IAM denial (9900403) ---------------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_iam_denial_of_batch_create(cmdb: Cmdb, gateway: str, lang: str) -> None:
    details = [(1, 102), (2, 103), (2, 102)]
    answer = await call_as(
        cmdb, gateway, RO, "batch_create_instance_association", batch_body(details), lang=lang
    )
    text = "Do not have access permission." if lang == "en" else "没有操作的权限"
    switch = {"type": "comobj_11", "type_name": "bk_switch"}
    host = {"type": "host", "type_name": "主机"}
    permission = {
        **SYSTEM,
        "actions": [
            {
                "id": "edit_comobj_11",
                "name": "bk_switch实例编辑",
                "related_resource_types": [
                    SYSTEM
                    | switch
                    | {
                        "instances": [
                            instance("comobj_11", "bk_switch", 1, "sw-core-01"),
                            instance("comobj_11", "bk_switch", 2, "bk_switch-2"),
                        ]
                    }
                ],
            },
            {
                "id": "edit_resource_pool_host",
                "name": "主机池主机编辑",
                "related_resource_types": [
                    SYSTEM
                    | host
                    | {
                        "instances": [
                            instance("host", "主机", 102, "10.0.0.2"),
                            instance("host", "主机", 103, "10.0.0.103"),
                        ]
                    }
                ],
            },
        ],
    }
    assert body_of(answer, gateway) == filter_doc(gateway, 9900403, text, permission)
    # All or nothing: no pair made, no id used up.
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    ok = await cmdb.batch(gateway, [(3, 104)])
    assert ok.doc["data"]["success_created"] == {"0": 2}
    stats = cmdb.sim.stats()
    assert stats["requests_by_code"] == {"9900403": 1, "0": 1}
    assert stats["created_total"] == 1 and stats["faults"] == {}


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_iam_denial_per_relation_and_object(cmdb: Cmdb, gateway: str) -> None:
    api = "batch_create_instance_association"
    denied = await call_as(cmdb, gateway, NO_MANAGE, api, batch_body([(2, 110)], MANAGE))
    assert code_of(body_of(denied, gateway)) == 9900403
    allowed = await call_as(cmdb, gateway, NO_MANAGE, api, batch_body([(2, 110)], CONNECT))
    assert allowed.doc["code"] == 0 and allowed.doc["data"]["success_created"] == {"0": 2}
    assert (2, 110) not in cmdb.sim.pairs(MANAGE) and (2, 110) in cmdb.sim.pairs(CONNECT)

    # The deny rule names the host side: deleting through bk_switch is fine, through host not.
    delete = "delete_related_inst_asso"
    refused = await call_as(cmdb, gateway, NO_MANAGE, delete, {"id": [2], "bk_obj_id": "host"})
    doc = body_of(refused, gateway)
    assert code_of(doc) == 9900403
    assert doc["permission"]["actions"] == [
        {
            "id": "delete_resource_pool_host",
            "name": "主机池主机删除",
            "related_resource_types": [SYSTEM | {"type": "host", "type_name": "主机"}],
        }
    ]
    assert (2, 110) in cmdb.sim.pairs(CONNECT)
    done = await call_as(cmdb, gateway, NO_MANAGE, delete, {"id": [2], "bk_obj_id": "bk_switch"})
    assert done.doc["code"] == 0 and done.doc["data"] == 1
    stats = cmdb.sim.stats()
    assert (stats["created_total"], stats["deleted_total"], stats["pairs_deleted"]) == (1, 1, 1)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_iam_denial_of_delete_and_reads_still_allowed(cmdb: Cmdb, gateway: str) -> None:
    answer = await call_as(
        cmdb, gateway, RO, "delete_related_inst_asso", {"id": [1], "bk_obj_id": "bk_switch"}
    )
    doc = body_of(answer, gateway)
    assert code_of(doc) == 9900403
    [action] = doc["permission"]["actions"]
    assert action["id"] == "delete_comobj_11" and action["name"] == "bk_switch实例删除"
    assert "instances" not in action["related_resource_types"][0]
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    creds = RO | {"bk_username": "admin"}
    if gateway == "esb":
        read = await cmdb.esb(
            "count_instance_associations", {"bk_obj_id": "bk_switch"}, creds=creds
        )
    else:
        read = await cmdb.gw("POST", COUNT_PATH, {}, auth=creds)
    assert read.doc["code"] == 0 and read.doc["data"] == {"count": 1}


async def test_esb_denial_reads_the_app_from_the_header(cmdb: Cmdb) -> None:
    """ESB reads X-Bkapi-Authorization before the body (esb/channel/base.py:331-354): the
    denial follows the header's app even when the body names an allowed one."""
    answer = await cmdb.esb(
        "batch_create_instance_association",
        batch_body([(2, 110)]),
        headers={"X-Bkapi-Authorization": json.dumps(RO | {"bk_username": "admin"})},
    )
    assert answer.doc["code"] == 9900403 and "bk_error_code" not in answer.doc


def test_count_cannot_be_denied() -> None:
    # Count is SkipAction in the API server and unchecked in topo (svc/association.go:804-836).
    doc = fixture_doc()
    doc["apps"] = [RO | {"deny": ["count_instance_associations"]}]
    with pytest.raises(FixtureError, match="never authorises count_instance_associations"):
        Fixture.from_dict(doc)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_search_is_denied_by_topo_after_its_checks(cmdb: Cmdb, gateway: str) -> None:
    """search_instance_associations: SkipAction in the API server, authorised in topo after
    the request checks (svc/association.go:770-789), so a proxied (renamed) refusal."""
    cmdb.sim.iam._deny["ro"] += (DenyRule("search_instance_associations"),)
    creds = RO | {"bk_username": "admin"}
    path = "/api/v3/search/instance_associations/object/bk_switch"
    good = {"page": {"start": 0, "limit": 10}}
    bad = {"page": {"start": 0, "limit": 0}}
    if gateway == "esb":
        refused = await cmdb.esb("search_instance_associations", good | {"bk_obj_id": "bk_switch"},
                                 creds=creds)  # fmt: skip
        invalid = await cmdb.esb("search_instance_associations", bad | {"bk_obj_id": "bk_switch"},
                                 creds=creds)  # fmt: skip
    else:
        refused = await cmdb.gw("POST", path, good, auth=creds)
        invalid = await cmdb.gw("POST", path, bad, auth=creds)
    assert code_of(invalid.doc) == 1199006  # the check comes first
    doc = body_of(refused, gateway)
    assert doc["code"] == 9900403 and "bk_error_code" not in doc
    # RespNoAuth writes a BaseResp (rest/contexts.go:455-469): no data key unless ESB adds it.
    assert ("data" in doc) is (gateway == "esb")
    assert doc["permission"]["actions"][0]["id"] == "view_comobj_11"


@pytest.mark.parametrize("options", [SimulatorOptions(auth=False)])
async def test_auth_off_means_no_iam(cmdb: Cmdb) -> None:
    # authFilter passes everything when auth is off (filter.go:243-247).
    answer = await call_as(cmdb, "apigw", RO, "batch_create_instance_association",
                           batch_body([(2, 110)]))  # fmt: skip
    assert answer.doc["code"] == 0 and (2, 110) in cmdb.sim.pairs(CONNECT)


def test_deny_rules_are_checked_when_loaded() -> None:
    def load(app: dict[str, Any]) -> None:
        doc = fixture_doc()
        doc["apps"] = [app]
        Fixture.from_dict(doc)

    with pytest.raises(FixtureError, match=r"apps\[0\]\.deny\[0\]: must be an API name"):
        load(RO | {"deny": ["batch_create_instance_associations"]})
    with pytest.raises(FixtureError, match=r"apps\[0\]\.deny\[0\]\.api: must be an API name"):
        load(RO | {"deny": [{"bk_obj_asst_id": CONNECT}]})
    with pytest.raises(FixtureError, match=r"apps\[0\]\.deny\[0\]\.bk_obj_asst: unknown key"):
        load(RO | {"deny": [{"api": "delete_related_inst_asso", "bk_obj_asst": CONNECT}]})
    with pytest.raises(FixtureError, match=r"deny\[0\]\.bk_obj_id: must be a non-empty string"):
        load(RO | {"deny": [{"api": "delete_related_inst_asso", "bk_obj_id": 5}]})
    with pytest.raises(FixtureError, match=r"apps\[0\]\.deny: must be a list"):
        load(RO | {"deny": "delete_related_inst_asso"})
    with pytest.raises(FixtureError, match=r"apps\[0\]\.denny: unknown key"):
        load(RO | {"denny": ["delete_related_inst_asso"]})


# --- CMDB fault kinds -------------------------------------------------------------------------


def faults(*kinds: str) -> SimulatorOptions:
    return SimulatorOptions(fault_rate=1.0, fault_kinds=kinds)


@pytest.mark.parametrize("options", [faults("cmdb-busy")])
@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_cmdb_busy_does_nothing(cmdb: Cmdb, gateway: str, lang: str) -> None:
    answer = await cmdb.batch(gateway, [(2, 110)], lang=lang)
    assert body_of(answer, gateway) == filter_doc(gateway, 1199997, "too many requests")
    read = await cmdb.call(
        gateway, "count_instance_associations", params={"bk_obj_id": "bk_switch"}
    )
    assert read.status == 200 and code_of(read.doc) == 1199997  # reads too
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    stats = cmdb.sim.stats()
    assert stats["faults"] == {"cmdb-busy": 2}
    assert stats["faults_by_api"] == {
        "batch_create_instance_association": {"cmdb-busy": 1},
        "count_instance_associations": {"cmdb-busy": 1},
    }
    assert stats["requests_by_code"] == {"1199997": 2} and stats["created_total"] == 0


@pytest.mark.parametrize("options", [faults("core-busy")])
@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_core_busy_does_nothing(cmdb: Cmdb, gateway: str, lang: str) -> None:
    single = {"bk_obj_asst_id": MANAGE, "bk_inst_id": 2, "bk_asst_inst_id": 110}
    answer = await cmdb.call(gateway, "add_instance_association", single, lang=lang)
    text = "association constraint mismatch" if lang == "en" else "关联关系约束不匹配"
    assert body_of(answer, gateway) == proxied_doc(gateway, 1113053, text)
    assert cmdb.sim.pairs(MANAGE) == set()
    # The batch path takes no lock (core/instance.go:380-445), nor do reads: no fault.
    read = await cmdb.call(
        gateway, "count_instance_associations", params={"bk_obj_id": "bk_switch"}
    )
    assert read.doc["code"] == 0
    batch = await cmdb.batch(gateway, [(2, 111)], asst=MANAGE)
    assert batch.doc["data"]["success_created"] == {"0": 2}  # the refused try used no id
    cmdb.sim.options.fault_rate = 0
    retry = await cmdb.call(gateway, "add_instance_association", single)
    assert retry.doc["data"] == {"id": 3}
    stats = cmdb.sim.stats()
    assert stats["faults_by_api"] == {"add_instance_association": {"core-busy": 1}}
    assert stats["created_total"] == 2


@pytest.mark.parametrize("options", [faults("audit-fail")])
@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_audit_fail_after_creating(cmdb: Cmdb, gateway: str, lang: str) -> None:
    # SaveAuditLog failure -> 1109001 (logic/association.go:396-411); no transaction.
    answer = await cmdb.batch(gateway, [(2, 110), (1, 101), (2, 111)], lang=lang)
    text = "save audit log failed" if lang == "en" else "保存操作审计日志失败"
    assert body_of(answer, gateway) == proxied_doc(gateway, 1109001, text)
    # The error is not the truth: both new pairs exist, with ids 2 and 3.
    assert cmdb.sim.pairs(CONNECT) == {(1, 101), (2, 110), (2, 111)}
    ids = {(r["bk_inst_id"], r["bk_asst_inst_id"]): r["id"] for r in cmdb.sim.associations(CONNECT)}
    assert (ids[(2, 110)], ids[(2, 111)]) == (2, 3)
    # A re-read shows them; a retry reports them as already there.
    search = await cmdb.call(
        gateway,
        "search_instance_associations",
        {
            "conditions": {
                "condition": "AND",
                "rules": [{"field": "bk_obj_asst_id", "operator": "equal", "value": CONNECT}],
            },
            "page": {"start": 0, "limit": 10, "sort": "id"},
        },
        params={"bk_obj_id": "bk_switch"},
    )
    assert [r["id"] for r in search.doc["data"]["info"]] == [1, 2, 3]
    cmdb.sim.options.fault_rate = 0
    retry = await cmdb.batch(gateway, [(2, 110), (2, 111)])
    assert retry.doc["data"]["success_created"] == {}
    assert len(retry.doc["data"]["error_msg"]) == 2
    stats = cmdb.sim.stats()
    assert stats["faults"] == {"audit-fail": 1}
    assert (stats["created_total"], stats["pairs_created"]) == (2, 2)
    assert stats["requests_by_code"] == {"1109001": 1, "0": 2}


@pytest.mark.parametrize("options", [faults("audit-fail")])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_audit_fail_rolls_deletes_back(cmdb: Cmdb, gateway: str) -> None:
    # AutoRunTxn (svc/association.go:1198,1235) aborts on the audit error: nothing deleted.
    answer = await cmdb.call(
        gateway, "delete_related_inst_asso", {"id": [1], "bk_obj_id": "bk_switch"}
    )
    assert body_of(answer, gateway) == proxied_doc(gateway, 1109001, "save audit log failed")
    single = await cmdb.call(
        gateway, "delete_instance_association", params={"bk_obj_id": "bk_switch", "id": 1}
    )
    assert code_of(single.doc) == 1109001
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    stats = cmdb.sim.stats()
    assert stats["deleted_total"] == 0 and stats["associations"] == 1
    assert stats["faults_by_api"] == {
        "delete_related_inst_asso": {"audit-fail": 1},
        "delete_instance_association": {"audit-fail": 1},
    }


@pytest.mark.parametrize("options", [faults("audit-fail")])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_audit_fail_rolls_a_single_create_back(cmdb: Cmdb, gateway: str) -> None:
    # AutoRunTxn (svc/association.go:1148): nothing created; the id sequence moved on.
    single = {"bk_obj_asst_id": CONNECT, "bk_inst_id": 2, "bk_asst_inst_id": 110}
    answer = await cmdb.call(gateway, "add_instance_association", single, lang="zh")
    assert body_of(answer, gateway) == proxied_doc(gateway, 1109001, "保存操作审计日志失败")
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    cmdb.sim.options.fault_rate = 0
    again = await cmdb.call(gateway, "add_instance_association", single)
    assert again.doc["data"] == {"id": 3}


@pytest.mark.parametrize("options", [faults("audit-fail", "core-busy")])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_refusals_beat_core_and_audit_faults(cmdb: Cmdb, gateway: str) -> None:
    """A request refused before it reaches the core service meets neither fault."""
    missing = await cmdb.batch(gateway, [(2, 110)], asst="bk_switch_nope_host")
    assert code_of(missing.doc) == 1199045 and missing.doc["result"] is False
    api = "batch_create_instance_association"
    denied = await call_as(cmdb, gateway, RO, api, batch_body([(2, 110)]))
    assert code_of(body_of(denied, gateway)) == 9900403
    stats = cmdb.sim.stats()
    assert stats["faults"] == {} and stats["created_total"] == 0


@pytest.mark.parametrize("options", [faults("cmdb-busy")])
async def test_cmdb_busy_comes_before_iam(cmdb: Cmdb) -> None:
    api = "batch_create_instance_association"
    answer = await call_as(cmdb, "apigw", RO, api, batch_body([(2, 110)]))
    assert answer.doc["bk_error_code"] == 1199997 and answer.doc["permission"] is None


# --- fault-kind selection ---------------------------------------------------------------------


async def test_default_kinds_stay_the_original_four() -> None:
    assert FAULT_KINDS == ("502", "504", "504-after", "drop")
    assert SimulatorOptions().fault_kinds == FAULT_KINDS
    assert set(ALL_FAULT_KINDS) - set(FAULT_KINDS) == {
        "cmdb-busy",
        "core-busy",
        "audit-fail",
        "watch-expired",
    }
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    assert parser.parse_args(["--fixture", "f"]).fault_kinds == FAULT_KINDS
    picked = parser.parse_args(["--fixture", "f", "--fault-kinds", "cmdb-busy,audit-fail,502"])
    assert picked.fault_kinds == ("cmdb-busy", "audit-fail", "502")
    # With every request faulted and the kinds left out, no CMDB-internal envelope appears.
    sim = Simulator(Fixture.from_dict(fixture_doc()), SimulatorOptions(fault_rate=1.0))
    async with sim.running() as url, aiohttp.ClientSession() as session:
        client = Cmdb(sim, url, session)
        for i in range(40):
            try:
                answer = await client.batch("apigw", [(2, 110 + i)])
            except aiohttp.ClientError:
                continue  # drop
            assert answer.status in (502, 504) and "bk_error_code" not in answer.doc
    assert set(sim.stats()["faults"]) <= set(FAULT_KINDS)


async def test_options_endpoint_takes_the_new_kinds(cmdb: Cmdb) -> None:
    changed = await cmdb.raw(
        "POST", "/_sim/options", json={"fault_rate": 1.0, "fault_kinds": ["cmdb-busy"]}
    )
    assert changed.doc["fault_kinds"] == ["cmdb-busy"]
    assert (await cmdb.gw("POST", COUNT_PATH, {})).doc["bk_error_code"] == 1199997


@pytest.mark.parametrize(
    "options",
    [SimulatorOptions(fault_rate=0.5, fault_kinds=ALL_FAULT_KINDS, seed=11)],
)
async def test_mixed_kinds_counters_add_up(cmdb: Cmdb) -> None:
    """Whatever the faults, the counters agree with the data; retries converge."""
    want = {(2, 110 + i) for i in range(30)}
    sent = 0
    for _ in range(60):
        missing = sorted(want - cmdb.sim.pairs(CONNECT))
        if not missing:
            break
        sent += 1
        with contextlib.suppress(aiohttp.ClientError):  # drop
            await cmdb.batch("esb" if sent % 2 else "apigw", missing[:3])
    assert want <= cmdb.sim.pairs(CONNECT)
    stats = (await cmdb.raw("GET", "/_sim/stats")).doc
    assert stats["created_total"] == 30 == stats["pairs_created"]
    assert stats["associations"] == 1 + stats["created_total"] - stats["deleted_total"]
    by_api = stats["faults_by_api"]["batch_create_instance_association"]
    assert by_api == stats["faults"] and sum(by_api.values()) >= 5
    # 30 pairs in batches of 3: ten requests, plus one per fault that did nothing. Faults
    # after acting (504-after, drop, audit-fail) cost no extra request: the pairs exist.
    assert "core-busy" not in by_api  # the batch path takes no lock
    did_nothing = sum(by_api.get(k, 0) for k in ("502", "504", "cmdb-busy"))
    assert stats["requests"] == sent == 10 + did_nothing


async def test_lifetime_totals_survive_a_reset(cmdb: Cmdb) -> None:
    await cmdb.batch("esb", [(2, 110), (2, 111)])
    await cmdb.call("apigw", "delete_related_inst_asso", {"id": [2], "bk_obj_id": "bk_switch"})
    cmdb.sim.delete_pairs(CONNECT, [(1, 101)])  # someone else's delete counts too
    before = cmdb.sim.stats()
    assert (before["created_total"], before["deleted_total"]) == (2, 2)
    assert (before["pairs_created"], before["pairs_deleted"]) == (2, 1)
    await cmdb.raw("POST", "/_sim/reset")
    after = (await cmdb.raw("GET", "/_sim/stats")).doc
    assert (after["created_total"], after["deleted_total"]) == (2, 2)
    assert (after["pairs_created"], after["pairs_deleted"], after["faults_by_api"]) == (0, 0, {})
