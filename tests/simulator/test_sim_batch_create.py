"""batch_create_instance_association: the topo server's checks, both gateways and languages.

These run with authorization off: with it on, the API server's attribute parse answers
some of these requests first (tests/simulator/test_sim_auth.py pins that stage).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sim_client import CONNECT, GATEWAYS, LANGS, MANAGE, OWN, Cmdb

from cmdb_simulator import SimulatorOptions

API = "batch_create_instance_association"


def body(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": CONNECT,
        "details": [{"bk_inst_id": 2, "bk_asst_inst_id": 102}],
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not ...}


@pytest.fixture
def options() -> SimulatorOptions:
    return SimulatorOptions(auth=False)


MANY = [{"bk_inst_id": 2, "bk_asst_inst_id": 103 + i} for i in range(201)]

# (request body, code, English, Chinese) in bk-cmdb's validation order.
REQUEST_LEVEL = [
    pytest.param(
        body(bk_obj_asst_id=""),
        1199011,
        "'bk_obj_asst_id' the parameter is invalid or does not exist",
        "'bk_obj_asst_id' 参数无效或不存在",
        id="no-obj-asst-id",
    ),
    pytest.param(
        body(bk_obj_id=...),
        1199011,
        "'bk_obj_id' the parameter is invalid or does not exist",
        "'bk_obj_id' 参数无效或不存在",
        id="no-obj-id",
    ),
    pytest.param(
        body(bk_asst_obj_id=""),
        1199011,
        "'bk_asst_obj_id' the parameter is invalid or does not exist",
        "'bk_asst_obj_id' 参数无效或不存在",
        id="no-asst-obj-id",
    ),
    pytest.param(
        body(details=[]),
        1199038,
        "need data details is null",
        "数据 details 不能为空",
        id="no-details",
    ),
    pytest.param(
        body(details=MANY),
        1199035,
        " details exceed the limit 200",
        " details 超过限制 200",
        id="over-200",
    ),
    pytest.param(
        body(bk_obj_id="router"),
        1199006,
        "'bk_obj_id' data parameter verification does not pass",
        "'bk_obj_id' 数据参数校验不通过",
        id="prefix",
    ),
    pytest.param(
        body(bk_asst_obj_id="switch"),
        1199006,
        "'bk_asst_obj_id' data parameter verification does not pass",
        "'bk_asst_obj_id' 数据参数校验不通过",
        id="suffix",
    ),
    pytest.param(
        body(bk_obj_asst_id="bk_switch_uplink_host"),
        1101046,
        "object association does not exist.",
        "模型的关联关系不存在",
        id="no-model",
    ),
    pytest.param(
        body(details=[{"bk_inst_id": "2", "bk_asst_inst_id": 102}]),
        1199000,
        "Deserializing JSON data failed",
        "反序列化JSON数据失败",
        id="wrong-type",
    ),
    pytest.param(
        body(details="x"),
        1199000,
        "Deserializing JSON data failed",
        "反序列化JSON数据失败",
        id="details-not-list",
    ),
    # Order: the first failing check wins.
    pytest.param(
        body(bk_obj_asst_id="", details=[]),
        1199011,
        "'bk_obj_asst_id' the parameter is invalid or does not exist",
        "'bk_obj_asst_id' 参数无效或不存在",
        id="order-id-before-details",
    ),
    pytest.param(
        body(bk_obj_id="router", details=MANY),
        1199035,
        " details exceed the limit 200",
        " details 超过限制 200",
        id="order-limit-before-prefix",
    ),
    pytest.param(
        body(bk_obj_id="bk", bk_obj_asst_id="bk_switch_uplink_host"),
        1101046,
        "object association does not exist.",
        "模型的关联关系不存在",
        id="order-prefix-ok-then-model",
    ),
]


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("doc", "code", "en", "zh"), REQUEST_LEVEL)
async def test_request_level_refusals(
    cmdb: Cmdb, gateway: str, lang: str, doc: dict[str, Any], code: int, en: str, zh: str
) -> None:
    answer = await cmdb.call(gateway, API, doc, lang=lang)
    assert answer.status == 200
    assert answer.doc["result"] is False
    assert answer.doc["code"] == code
    assert answer.doc["message"] == (en if lang == "en" else zh)
    assert answer.doc["data"] is None
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}


EXISTS = ("the associations bk_switch->host already exist", "关联关系 bk_switch->host 重复")
NO_SRC = ("the association inst is not exist", "关联实例不存在")
NO_DST = ("the  inst to asst  is not exist", "被关联实例不存在")
ONE_ONE = (
    "can not create multiple instance association for a 1:1 association.",
    "关联关系为1:1的，不能同时关联多个实例",
)
ONE_N = (
    "The relationship is 1:n, and multiple source model instances cannot be associated "
    "at the same time.",
    "关联关系为1:n的，不能同时关联多个源模型实例",
)


def text(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "en" else pair[1]


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_per_index_rows(cmdb: Cmdb, gateway: str, lang: str) -> None:
    details = [
        (1, 101),  # exists in the fixture
        (999, 102),  # no such switch
        (2, 9999),  # no such host
        (999, 9999),  # both missing: the source check comes first
        (2, 102),  # created
        (2, 102),  # repeat inside the same request
    ]
    answer = await cmdb.batch(gateway, details, lang=lang)
    assert answer.doc["result"] is True and answer.doc["code"] == 0
    data = answer.doc["data"]
    assert list(data["success_created"]) == ["4"]
    assert data["error_msg"] == {
        "0": text(EXISTS, lang),
        "1": text(NO_SRC, lang),
        "2": text(NO_DST, lang),
        "3": text(NO_SRC, lang),
        "5": text(EXISTS, lang),
    }
    new_id = data["success_created"]["4"]
    assert {r["id"] for r in cmdb.sim.associations(CONNECT)} == {1, new_id}
    assert cmdb.sim.pairs(CONNECT) == {(1, 101), (2, 102)}


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_one_to_many(cmdb: Cmdb, gateway: str, lang: str) -> None:
    # 1:n: a host may have one managing switch; a switch may manage many hosts.
    answer = await cmdb.batch(
        gateway, [(2, 110), (2, 111), (3, 110), (3, 112), (999, 111)], asst=MANAGE, lang=lang
    )
    data = answer.doc["data"]
    assert sorted(data["success_created"]) == ["0", "1", "3"]
    assert data["error_msg"] == {"2": text(ONE_N, lang), "4": text(NO_SRC, lang)}
    answer = await cmdb.batch(gateway, [(4, 111), (2, 110)], asst=MANAGE, lang=lang)
    assert answer.doc["data"]["error_msg"] == {
        "0": text(ONE_N, lang),
        "1": "the associations bk_switch->host already exist"
        if lang == "en"
        else "关联关系 bk_switch->host 重复",
    }
    assert cmdb.sim.pairs(MANAGE) == {(2, 110), (2, 111), (3, 112)}


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_one_to_one(cmdb: Cmdb, gateway: str, lang: str) -> None:
    answer = await cmdb.batch(
        gateway, [(2, 110), (2, 111), (3, 110), (3, 111)], asst=OWN, lang=lang
    )
    data = answer.doc["data"]
    assert sorted(data["success_created"]) == ["0", "3"]
    assert data["error_msg"] == {"1": text(ONE_ONE, lang), "2": text(ONE_ONE, lang)}
    assert cmdb.sim.pairs(OWN) == {(2, 110), (3, 111)}
    # Freed by a delete, the sides can be used again.
    assert cmdb.sim.delete_pairs(OWN, [(2, 110)]) == 1
    answer = await cmdb.batch(gateway, [(2, 112), (4, 110)], asst=OWN, lang=lang)
    assert sorted(answer.doc["data"]["success_created"]) == ["0", "1"]


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_all_fail_is_still_result_true(cmdb: Cmdb, gateway: str) -> None:
    answer = await cmdb.batch(gateway, [(1, 101), (999, 101)])
    assert answer.doc["result"] is True
    assert answer.doc["code"] == 0
    assert answer.doc["data"]["success_created"] == {}
    assert len(answer.doc["data"]["error_msg"]) == 2


async def test_ids_come_from_one_growing_sequence(cmdb: Cmdb) -> None:
    first = (await cmdb.batch("esb", [(2, 110), (2, 111)])).doc["data"]["success_created"]
    other = (await cmdb.batch("apigw", [(5, 120)], asst=MANAGE)).doc["data"]["success_created"]
    assert cmdb.sim.delete_pairs(CONNECT, [(2, 111)]) == 1
    again = (await cmdb.batch("esb", [(2, 111)])).doc["data"]["success_created"]
    ids = [first["0"], first["1"], other["0"], again["0"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert ids[0] > 1  # the fixture's pair took id 1


async def test_language_defaults(cmdb: Cmdb) -> None:
    # ESB defaults to English, the API gateway path to Chinese.
    esb = await cmdb.esb(API, body(details=[{"bk_inst_id": 1, "bk_asst_inst_id": 101}]), lang=None)
    assert esb.doc["data"]["error_msg"] == {"0": EXISTS[0]}
    gw = await cmdb.gw(
        "POST",
        "/api/v3/createmany/instassociation",
        body(details=[{"bk_inst_id": 1, "bk_asst_inst_id": 101}]),
        lang=None,
    )
    assert gw.doc["data"]["error_msg"] == {"0": EXISTS[1]}
    zh = await cmdb.esb(API, body(bk_obj_id=...), lang=None, headers={"Blueking-Language": "zh"})
    assert zh.doc["message"] == "'bk_obj_id' 参数无效或不存在"


async def test_exactly_200_details_pass(cmdb: Cmdb) -> None:
    answer = await cmdb.batch("apigw", [(7, 101 + i) for i in range(200)])
    assert len(answer.doc["data"]["success_created"]) == 200
    assert cmdb.sim.stats()["max_batch"] == 200


@pytest.mark.parametrize("options", [SimulatorOptions(per_detail_ms=30, auth=False)])
async def test_concurrent_same_pair_loses_with_raw_duplicate_key(cmdb: Cmdb) -> None:
    # No lock in the batch path: both pass the existence check, the loser hits the unique index.
    first, second = await asyncio.gather(
        cmdb.batch("esb", [(9, 150)]), cmdb.batch("apigw", [(9, 150)])
    )
    outcomes = [first.doc["data"], second.doc["data"]]
    assert sorted(len(d["success_created"]) for d in outcomes) == [0, 1]
    loser = next(d for d in outcomes if not d["success_created"])
    # The driver's InsertMany error (src/storage/dal/mongo/local/mongo.go:656-661) around
    # the unique index of src/common/index/association.go:59-67, in its key order.
    assert loser["error_msg"]["0"] == (
        "bulk write exception: write errors: [E11000 duplicate key error collection: "
        "cmdb.cc_InstAsst_0_pub_bk_switch index: bkcc_unique_bkInstID_bkAsstInstID_bkObjAsstID "
        "dup key: { bk_inst_id: 9, bk_asst_inst_id: 150, "
        'bk_obj_asst_id: "bk_switch_connect_host" }]'
    )
    assert cmdb.sim.pairs(CONNECT) == {(1, 101), (9, 150)}


@pytest.mark.parametrize(
    "options", [SimulatorOptions(per_detail_ms=30, auth=False, cmdb_version="3.10.16")]
)
async def test_before_the_unique_index_a_lost_race_doubles_the_pair(cmdb: Cmdb) -> None:
    # Before v3.10.17 (commit 09558b061c) there is no pair index: both inserts succeed.
    first, second = await asyncio.gather(
        cmdb.batch("esb", [(9, 150)]), cmdb.batch("apigw", [(9, 150)])
    )
    assert [len(a.doc["data"]["success_created"]) for a in (first, second)] == [1, 1]
    rows = [r for r in cmdb.sim.associations(CONNECT) if r["bk_inst_id"] == 9]
    assert len(rows) == 2
    assert cmdb.sim.delete_pairs(CONNECT, [(9, 150)]) == 1
    assert cmdb.sim.delete_pairs(CONNECT, [(9, 150)]) == 1
    assert (9, 150) not in cmdb.sim.pairs(CONNECT)


@pytest.mark.parametrize("options", [SimulatorOptions(per_detail_ms=30, auth=False)])
async def test_concurrent_requests_can_break_one_to_many(cmdb: Cmdb) -> None:
    # The mapping check takes no lock either: two sources for one target can both land.
    await asyncio.gather(
        cmdb.batch("esb", [(2, 150)], MANAGE), cmdb.batch("esb", [(3, 150)], MANAGE)
    )
    assert cmdb.sim.pairs(MANAGE) == {(2, 150), (3, 150)}
