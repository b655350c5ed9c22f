"""Searches, counts, finds, single creates and deletes, through both gateways."""

from __future__ import annotations

from typing import Any

import pytest
from sim_client import CONNECT, GATEWAYS, MANAGE, Cmdb

SEARCH = "search_instance_associations"
COUNT = "count_instance_associations"


def where(*rules: dict[str, Any], condition: str = "AND") -> dict[str, Any]:
    return {"condition": condition, "rules": list(rules)}


def rule(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


ON_CONNECT = rule("bk_obj_asst_id", "equal", CONNECT)


async def search(
    cmdb: Cmdb, gateway: str, obj: str, conditions: Any, page: dict[str, Any], **extra: Any
) -> Any:
    body = {"conditions": conditions, "page": page, **extra}
    return await cmdb.call(gateway, SEARCH, body, {"bk_obj_id": obj})


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_paging_by_id_reads_everything_once(cmdb: Cmdb, gateway: str) -> None:
    await cmdb.batch(gateway, [(s, 120 + s) for s in range(2, 26)])
    await cmdb.batch(gateway, [(3, 200)], asst=MANAGE)  # another relation: filtered out
    seen: list[dict[str, Any]] = []
    for start in range(0, 40, 10):
        answer = await search(
            cmdb,
            gateway,
            "bk_switch",
            where(ON_CONNECT),
            {"start": start, "limit": 10, "sort": "id"},
        )
        assert answer.doc["result"] is True
        seen += answer.doc["data"]["info"]
    assert [r["id"] for r in seen] == sorted(r["id"] for r in seen)
    assert {(r["bk_inst_id"], r["bk_asst_inst_id"]) for r in seen} == cmdb.sim.pairs(CONNECT)
    assert len(seen) == 25
    assert set(seen[0]) >= {
        "id",
        "bk_obj_id",
        "bk_inst_id",
        "bk_asst_obj_id",
        "bk_asst_inst_id",
        "bk_obj_asst_id",
        "bk_asst_id",
    }
    answer = await search(
        cmdb, gateway, "bk_switch", where(ON_CONNECT), {"start": 0, "limit": 3, "sort": "-id"},
        fields=["id", "bk_asst_inst_id"],
    )  # fmt: skip
    info = answer.doc["data"]["info"]
    assert [set(r) for r in info] == [{"id", "bk_asst_inst_id"}] * 3
    assert info[0]["id"] == max(r["id"] for r in seen)
    assert "count" not in answer.doc["data"]


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_both_directions_and_count(cmdb: Cmdb, gateway: str) -> None:
    await cmdb.batch(gateway, [(2, 150), (3, 150)])
    page = {"start": 0, "limit": 500, "sort": "id"}
    from_host = await search(cmdb, gateway, "host", where(ON_CONNECT), page)
    assert len(from_host.doc["data"]["info"]) == 3  # the host table holds the rows too
    narrowed = await search(
        cmdb, gateway, "host", where(ON_CONNECT, rule("bk_asst_inst_id", "equal", 150)), page
    )
    assert {r["bk_inst_id"] for r in narrowed.doc["data"]["info"]} == {2, 3}
    counted = await cmdb.call(
        gateway, COUNT, {"conditions": where(ON_CONNECT)}, {"bk_obj_id": "bk_switch"}
    )
    assert counted.doc["data"] == {"count": 3}
    as_target = await cmdb.call(
        gateway, COUNT, {"conditions": where(ON_CONNECT)}, {"bk_obj_id": "host"}
    )
    assert as_target.doc["data"] == {"count": 0}  # counts only rows where it is the source


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_operators_and_nesting(cmdb: Cmdb, gateway: str) -> None:
    await cmdb.batch(gateway, [(2, 150), (3, 151), (4, 152)])
    page = {"start": 0, "limit": 100, "sort": "id"}

    async def pairs(conditions: Any) -> set[tuple[int, int]]:
        answer = await search(cmdb, gateway, "bk_switch", conditions, page)
        assert answer.doc["result"] is True, answer.doc
        return {(r["bk_inst_id"], r["bk_asst_inst_id"]) for r in answer.doc["data"]["info"]}

    assert await pairs(where(ON_CONNECT, rule("bk_inst_id", "in", [2, 4]))) == {(2, 150), (4, 152)}
    assert await pairs(where(ON_CONNECT, rule("bk_inst_id", "not_in", [2, 4]))) == {
        (1, 101),
        (3, 151),
    }
    assert await pairs(where(ON_CONNECT, rule("bk_inst_id", "not_equal", 1))) == {
        (2, 150),
        (3, 151),
        (4, 152),
    }
    # Depth 3 (bk-cmdb counts an atom as 1): AND of an OR of atoms.
    nested = where(
        ON_CONNECT,
        where(
            rule("bk_asst_inst_id", "equal", 101), rule("bk_inst_id", "equal", 3), condition="OR"
        ),
    )
    assert await pairs(nested) == {(1, 101), (3, 151)}
    assert await pairs(None) == {(1, 101), (2, 150), (3, 151), (4, 152)}


LIMIT_REFUSALS = [
    pytest.param({"start": 0, "limit": 0}, None, "page.limit", id="limit-0"),
    pytest.param({"start": 0, "limit": 501}, None, "page.limit", id="limit-501"),
    pytest.param(
        {"start": 0, "limit": 10},
        where(rule("bk_inst_id", "in", list(range(501)))),
        "conditions.rules[0].value",
        id="in-501",
    ),
    pytest.param(
        {"start": 0, "limit": 10},
        where(*[rule("bk_inst_id", "equal", i) for i in range(21)], condition="OR"),
        "conditions.rules",
        id="or-21",
    ),
    pytest.param(
        {"start": 0, "limit": 10},
        where(where(where(rule("id", "equal", 1)))),
        "conditions.rules",
        id="depth-4",
    ),
    pytest.param(
        {"start": 0, "limit": 10},
        where(rule("id", "like", 1)),
        "conditions.rules[0].operator",
        id="operator",
    ),
]


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(("page", "conditions", "key"), LIMIT_REFUSALS)
async def test_search_limits(
    cmdb: Cmdb, gateway: str, page: Any, conditions: Any, key: str
) -> None:
    answer = await search(cmdb, gateway, "bk_switch", conditions, page)
    assert answer.doc["result"] is False
    assert answer.doc["code"] == 1199006
    assert answer.doc["message"] == f"'{key}' data parameter verification does not pass"
    zh = await cmdb.call(
        gateway,
        SEARCH,
        {"conditions": conditions, "page": page},
        {"bk_obj_id": "bk_switch"},
        lang="zh",
    )
    assert zh.doc["message"] == f"'{key}' 数据参数校验不通过"


async def test_limits_at_the_edge_pass(cmdb: Cmdb) -> None:
    ok = await search(
        cmdb,
        "apigw",
        "bk_switch",
        where(*[rule("bk_inst_id", "in", list(range(500))) for _ in range(20)], condition="OR"),
        {"start": 0, "limit": 500},
    )
    assert ok.doc["result"] is True
    assert len(ok.doc["data"]["info"]) == 1


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_find_object_association(cmdb: Cmdb, gateway: str) -> None:
    answer = await cmdb.call(
        gateway, "find_object_association", {"condition": {"bk_obj_asst_id": MANAGE}}
    )
    [found] = answer.doc["data"]
    assert found["mapping"] == "1:n"
    assert (found["bk_obj_id"], found["bk_asst_id"], found["bk_asst_obj_id"]) == (
        "bk_switch",
        "manage",
        "host",
    )
    every = await cmdb.call(
        gateway,
        "find_object_association",
        {"condition": {"bk_obj_id": "bk_switch", "bk_asst_obj_id": "host"}},
    )
    assert {m["mapping"] for m in every.doc["data"]} == {"n:n", "1:n", "1:1"}
    empty = await cmdb.call(gateway, "find_object_association", {"condition": {}})
    assert empty.doc["result"] is False and empty.doc["code"] == 1199011


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_find_instance_association(cmdb: Cmdb, gateway: str) -> None:
    answer = await cmdb.call(
        gateway,
        "find_instance_association",
        {
            "bk_obj_id": "bk_switch",
            "condition": {"bk_obj_asst_id": CONNECT, "bk_asst_obj_id": "host"},
        },
    )
    assert [(r["bk_inst_id"], r["bk_asst_inst_id"]) for r in answer.doc["data"]] == [(1, 101)]
    missing = await cmdb.call(gateway, "find_instance_association", {"condition": {}})
    assert missing.doc["code"] == 1199010
    assert missing.doc["message"] == "'bk_obj_id' unassigned"


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_add_instance_association(cmdb: Cmdb, gateway: str) -> None:
    add = "add_instance_association"
    made = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": MANAGE, "bk_inst_id": 2, "bk_asst_inst_id": 110}
    )
    assert made.doc["result"] is True and isinstance(made.doc["data"]["id"], int)
    again = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": CONNECT, "bk_inst_id": 1, "bk_asst_inst_id": 101}
    )
    assert (again.doc["code"], again.doc["message"]) == (
        1199014,
        "duplicated instances exist, fields [association] duplicated",
    )
    second_source = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": MANAGE, "bk_inst_id": 3, "bk_asst_inst_id": 110}, lang="zh"
    )
    assert second_source.doc["code"] == 1101061
    assert second_source.doc["message"] == "关联关系为1:n的，不能同时关联多个源模型实例"
    no_switch = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": CONNECT, "bk_inst_id": 999, "bk_asst_inst_id": 102}
    )
    assert (no_switch.doc["code"], no_switch.doc["message"]) == (
        1101073,
        "the association inst is not exist",
    )
    assert cmdb.sim.pairs(MANAGE) == {(2, 110)}
    # With auth on, the API server answers these before topo (test_sim_auth.py); off:
    cmdb.sim.options.auth = False
    no_model = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": "nope", "bk_inst_id": 3, "bk_asst_inst_id": 1}
    )
    assert no_model.doc["code"] == 1101046
    no_host = await cmdb.call(
        gateway, add, {"bk_obj_asst_id": CONNECT, "bk_inst_id": 3, "bk_asst_inst_id": 9}
    )
    assert (no_host.doc["code"], no_host.doc["message"]) == (
        1101074,
        "the  inst to asst  is not exist",
    )


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_delete_related_inst_asso(cmdb: Cmdb, gateway: str) -> None:
    created = (await cmdb.batch(gateway, [(2, 110), (2, 111), (2, 112)])).doc["data"][
        "success_created"
    ]
    ids = [created["0"], created["1"]]
    api = "delete_related_inst_asso"
    answer = await cmdb.call(gateway, api, {"bk_obj_id": "bk_switch", "id": [*ids, 987654]})
    assert answer.doc["result"] is True and answer.doc["data"] == 2
    repeat = await cmdb.call(gateway, api, {"bk_obj_id": "bk_switch", "id": ids})
    assert repeat.doc["data"] == 0
    # Deleting through the target's table removes the row as well.
    via_host = await cmdb.call(gateway, api, {"bk_obj_id": "host", "id": [created["2"]]})
    assert via_host.doc["data"] == 1
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    empty = await cmdb.call(gateway, api, {"bk_obj_id": "bk_switch", "id": []})
    assert (empty.doc["code"], empty.doc["message"]) == (1199003, "invalid input parameter")
    many = await cmdb.call(
        gateway, api, {"bk_obj_id": "bk_switch", "id": list(range(1, 502))}, lang="zh"
    )
    assert (many.doc["code"], many.doc["message"]) == (
        1199059,
        "分页查询数量超过限制的最大值, 建议值200",
    )
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_delete_instance_association(cmdb: Cmdb, gateway: str) -> None:
    [row] = cmdb.sim.associations(CONNECT)
    answer = await cmdb.call(
        gateway, "delete_instance_association", params={"bk_obj_id": "bk_switch", "id": row["id"]}
    )
    assert answer.doc["result"] is True and answer.doc["data"] is None
    assert cmdb.sim.pairs(CONNECT) == set()
    cmdb.sim.options.auth = False  # with auth on the parse refuses first (conformance)
    bad = await cmdb.call(
        gateway, "delete_instance_association", params={"bk_obj_id": "bk_switch", "id": "x"}
    )
    assert (bad.doc["code"], bad.doc["message"]) == (
        1199009,
        "'association_id' parameters must be integral",
    )


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_search_object_instances(cmdb: Cmdb, gateway: str) -> None:
    api = "search_object_instances"
    page = {"start": 0, "limit": 10}
    by_name = await cmdb.call(
        gateway,
        api,
        {
            "conditions": where(rule("bk_inst_name", "in", ["sw-core-01", "bk_switch-7", "nope"])),
            "page": page,
        },
        {"bk_obj_id": "bk_switch"},
    )
    info = by_name.doc["data"]["info"]
    assert [(r["bk_inst_id"], r["bk_inst_name"]) for r in info] == [
        (1, "sw-core-01"),
        (7, "bk_switch-7"),
    ]
    paged = await cmdb.call(
        gateway,
        api,
        {"page": {"start": 45, "limit": 10, "sort": "bk_inst_id"}},
        {"bk_obj_id": "bk_switch"},
    )
    assert [r["bk_inst_id"] for r in paged.doc["data"]["info"]] == [46, 47, 48, 49, 50]
    host = await cmdb.call(gateway, api, {"page": page}, {"bk_obj_id": "host"})
    assert (host.doc["code"], host.doc["message"]) == (
        1199084,
        "forbidden operate inner model instance with common instance API",
    )
    too_big = await cmdb.call(gateway, api, {"page": {"limit": 501}}, {"bk_obj_id": "bk_switch"})
    assert too_big.doc["code"] == 1199006


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_list_hosts_without_biz(cmdb: Cmdb, gateway: str) -> None:
    api = "list_hosts_without_biz"
    by_ip = await cmdb.call(
        gateway,
        api,
        {
            "host_property_filter": where(
                rule("bk_host_innerip", "in", ["10.0.0.2", "10.0.0.200", "10.0.0.1"])
            ),
            "fields": ["bk_host_id", "bk_host_innerip"],
            "page": {"start": 0, "limit": 500},
        },
    )
    assert by_ip.doc["data"] == {
        "count": 3,
        "info": [
            {"bk_host_id": 101, "bk_host_innerip": "10.0.0.1"},
            {"bk_host_id": 102, "bk_host_innerip": "10.0.0.2"},
            {"bk_host_id": 200, "bk_host_innerip": "10.0.0.200"},  # generated from the id
        ],
    }
    by_name = await cmdb.call(
        gateway,
        api,
        {
            "host_property_filter": where(rule("bk_host_name", "equal", "srv-02")),
            "page": {"start": 0, "limit": 1},
        },
    )
    assert [h["bk_host_id"] for h in by_name.doc["data"]["info"]] == [102]
    page = await cmdb.call(gateway, api, {"page": {"start": 190, "limit": 50}})
    assert page.doc["data"]["count"] == 200
    assert [h["bk_host_id"] for h in page.doc["data"]["info"]] == list(range(291, 301))
    # BasePage.Validate(false) (metadata/hostserver.go:457-460, page.go:52-75): 0..1000.
    wide = await cmdb.call(gateway, api, {"page": {"start": 0, "limit": 1000}})
    assert len(wide.doc["data"]["info"]) == 200
    unlimited = await cmdb.call(gateway, api, {"page": {"start": 150, "limit": 0}})
    assert len(unlimited.doc["data"]["info"]) == 50
    for page, key in (({"start": 0, "limit": 1001}, "page.limit"),
                      ({"start": -1, "limit": -1}, "page.start"),
                      ({"start": 0, "limit": -1}, "page.limit")):  # fmt: skip
        bad = await cmdb.call(gateway, api, {"page": page})
        assert (bad.doc["code"], bad.doc["message"]) == (
            1199006,
            f"'{key}' data parameter verification does not pass",
        )
