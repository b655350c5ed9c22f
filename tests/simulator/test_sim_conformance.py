"""One test per audited rule (/work/shared/docs/bk-cmdb-audit.md), each pinned to its source.

Paths are in TencentBlueKing/bk-cmdb unless prefixed ``esb/`` (blueking-apigateway
src/esb/esb/) or ``apigw:`` (the gateway's error-code guide).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sim_client import APP, CONNECT, GATEWAYS, LANGS, Cmdb

from cmdb_simulator import SimulatorOptions
from cmdb_simulator.envelope import code_of

AUTH_OFF = SimulatorOptions(auth=False)
SEARCH = "search_instance_associations"
OBJ = {"bk_obj_id": "bk_switch"}


def rule(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def where(*rules: Any, condition: str = "AND") -> dict[str, Any]:
    return {"condition": condition, "rules": list(rules)}


def text(code: int, lang: str, en: str, zh: str) -> tuple[int, str]:
    return code, en if lang == "en" else zh


# --- envelopes (audit 17, 18; 2.A) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "renamed"),
    [("3.14", True), ("3.12", True), ("3.12.4", True), ("3.12.3", False), ("3.10", False)],
)
async def test_apigw_key_rename_by_version(cmdb: Cmdb, version: str, renamed: bool) -> None:
    # src/apiserver/service/http.go:145-183 (v3.12.4, commit 00d8288214).
    cmdb.sim.options.cmdb_version = version
    ok = await cmdb.gw("POST", "/api/v3/count/instance_associations/object/bk_switch", {})
    bad = await cmdb.gw("POST", "/api/v3/count/instance_associations/object/bk_switch", [])
    if renamed:
        assert ok.doc == {"result": True, "code": 0, "message": "success", "permission": None,
                          "data": {"count": 1}}  # fmt: skip
        assert set(bad.doc) == {"result", "code", "message", "permission", "data"}
    else:
        assert ok.doc == {"result": True, "bk_error_code": 0, "bk_error_msg": "success",
                          "permission": None, "data": {"count": 1}}  # fmt: skip
        assert set(bad.doc) == {"result", "bk_error_code", "bk_error_msg", "permission", "data"}
    # ESB rewrites whatever the version (esb/components/bk/apisv2/cc/toolkit/tools.py:93-123).
    esb = await cmdb.esb("count_instance_associations", {"bk_obj_id": "bk_switch"})
    assert list(esb.doc) == ["result", "code", "data", "message", "permission", "request_id"]


def test_cmdb_version_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown cmdb version"):
        SimulatorOptions(cmdb_version="3.11")
    with pytest.raises(ValueError, match="unknown cmdb version"):
        SimulatorOptions(cmdb_version="3.14.x")


# --- batch create (audit 2, 6; 2.H) --------------------------------------------------------


@pytest.mark.parametrize("options", [AUTH_OFF])
@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_short_asst_id_panics_into_1199999(cmdb: Cmdb, gateway: str, lang: str) -> None:
    # metadata/association.go:298,305 slice out of range; rdapi/rdfunc.go:53-61 recovers.
    body = {"bk_obj_id": "bk_switch", "bk_asst_obj_id": "host", "bk_obj_asst_id": "nope",
            "details": [{"bk_inst_id": 2, "bk_asst_inst_id": 102}]}  # fmt: skip
    answer = await cmdb.call(gateway, "batch_create_instance_association", body, lang=lang)
    assert (answer.doc["code"], answer.doc["message"]) == text(
        1199999, lang, "'topo' Internal Server Error", "'topo' 服务器内部错误"
    )
    body |= {"bk_obj_asst_id": "bk_switch_x", "bk_asst_obj_id": "a_very_long_host"}
    suffix = await cmdb.call(gateway, "batch_create_instance_association", body, lang=lang)
    assert suffix.doc["code"] == 1199999


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_result_maps_are_sorted_as_text(cmdb: Cmdb, gateway: str) -> None:
    # map[int64]... marshalled by jsoniter with SortMapKeys (src/common/json/json.go:25-30).
    pairs = [(2, 110 + i) for i in range(12)] + [(999, 150)]
    answer = await cmdb.batch(gateway, pairs)
    created = list(answer.doc["data"]["success_created"])
    assert created == ["0", "1", "10", "11", "2", "3", "4", "5", "6", "7", "8", "9"]
    doc = APP | {"bk_username": "a", "bk_obj_id": "bk_switch", "bk_asst_obj_id": "host"}
    doc["bk_obj_asst_id"] = CONNECT
    doc["details"] = [{"bk_inst_id": 2, "bk_asst_inst_id": 110 + i} for i in range(11)]
    path = "/api/c/compapi/v2/cc/batch_create_instance_association/"
    raw = await cmdb.raw("POST", path, data=json.dumps(doc))
    assert list(raw.doc["data"]["error_msg"]) == ["0", "1", "10", *map(str, range(2, 10))]


# --- decode errors (audit 12, 13; 2.D) -----------------------------------------------------


@pytest.mark.parametrize("options", [AUTH_OFF])
@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_three_apis_wrap_decode_errors_in_1199006(
    cmdb: Cmdb, gateway: str, lang: str
) -> None:
    # CCError.New(1199006, err.Error()): svc/association.go:1143 (single create), :1218
    # (batch delete), :841 (find); the text is DecodeInto's 1199000 text.
    want = text(1199006, lang, "Deserializing JSON data failed", "反序列化JSON数据失败")
    for api, body in (
        ("add_instance_association", {"bk_obj_asst_id": CONNECT, "bk_inst_id": "2"}),
        ("delete_related_inst_asso", {"id": ["1"], "bk_obj_id": "bk_switch"}),
        ("find_instance_association", {"bk_obj_id": 5}),
    ):
        answer = await cmdb.call(gateway, api, body, lang=lang)
        assert (answer.doc["code"], answer.doc["message"]) == want, api
    # Batch create and search use RespAutoError: plain 1199000 (rest/contexts.go:60-77).
    search = await cmdb.call(gateway, SEARCH, {"page": "x"}, OBJ, lang=lang)
    assert search.doc["code"] == 1199000


# --- query filters (audit 22-26; 2.E) ------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_query_filter_shapes(cmdb: Cmdb, gateway: str) -> None:
    page = {"start": 0, "limit": 10}

    async def ask(conditions: Any, api: str = SEARCH) -> Any:
        return (await cmdb.call(gateway, api, {"conditions": conditions, "page": page}, OBJ)).doc

    # Top level must be combined (querybuilder/parser.go:89-100): key "conditions.".
    atom = await ask(rule("bk_obj_asst_id", "equal", CONNECT))
    assert (atom["code"], atom["message"]) == (
        1199006,
        "'conditions.' data parameter verification does not pass",
    )
    # Malformed shapes do not decode (parser.go:37-81): 1199000, even for count.
    for bad in ({}, [], where({"field": "a"}), {"condition": "AND", "rules": {"a": 1}}):
        assert (await ask(bad))["code"] == 1199000, bad
        assert (await ask(bad, "count_instance_associations"))["code"] == 1199000, bad
    # Null children are skipped, as ParseRule returns nil for them.
    ok = await ask(where(None, rule("bk_obj_asst_id", "equal", CONNECT)))
    assert ok["code"] == 0 and len(ok["data"]["info"]) == 1


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_query_filter_types_and_matching(cmdb: Cmdb, gateway: str) -> None:
    page = {"start": 0, "limit": 500, "sort": "bk_host_id"}

    async def hosts(*rules: Any) -> Any:
        body = {"host_property_filter": where(*rules), "page": page, "fields": ["bk_host_id"]}
        answer = await cmdb.call(gateway, "list_hosts_without_biz", body)
        return answer.doc

    # ints and floats are one "numeric" type (querybuilder/validate.go:41-52,106-135).
    mixed = await hosts(rule("bk_host_id", "in", [101, 102.0, 1.5]))
    assert [h["bk_host_id"] for h in mixed["data"]["info"]] == [101, 102]
    # datetime_* operators exist (types.go:99-107).
    assert (await hosts(rule("create_time", "datetime_less", "2020-01-01")))["code"] == 0
    # contains: unescaped regex, case-insensitive; not_contains: case-sensitive
    # (types.go:351-375).
    regex = await hosts(rule("bk_host_innerip", "contains", "^10\\.0\\.0\\.1$"))
    assert [h["bk_host_id"] for h in regex["data"]["info"]] == [101]
    upper = await hosts(rule("bk_host_name", "contains", "SRV-0"))
    assert [h["bk_host_id"] for h in upper["data"]["info"]] == [101, 102]
    not_upper = await hosts(rule("bk_host_name", "not_contains", "SRV"),
                            rule("bk_host_id", "less", 103))  # fmt: skip
    assert [h["bk_host_id"] for h in not_upper["data"]["info"]] == [101, 102]
    begins = await hosts(rule("bk_host_name", "begins_with", "srv-0[12]"))
    assert [h["bk_host_id"] for h in begins["data"]["info"]] == [101, 102]


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_search_has_no_page_start_check(cmdb: Cmdb, gateway: str) -> None:
    # CommonSearchFilter.Validate checks the limit only (metadata/common.go:479-482); a
    # negative start reaches MongoDB as a negative skip (mongo.go:426-430).
    body = {"page": {"start": -1, "limit": 0}}
    limit = await cmdb.call(gateway, SEARCH, body, OBJ)
    assert limit.doc["message"] == "'page.limit' data parameter verification does not pass"
    body = {"page": {"start": -1, "limit": 10}}
    start = await cmdb.call(gateway, SEARCH, body, OBJ)
    assert start.doc["code"] == 1199998 and "skip" in start.doc["message"]


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_search_object_instances_uses_pkg_filter(cmdb: Cmdb, gateway: str) -> None:
    # metadata/inst.go:362-400 with pkg/filter/expression.go:56-63: 50 rules, key = JSON.
    api = "search_object_instances"
    page = {"start": 0, "limit": 500}
    ors = [rule("bk_inst_id", "equal", i) for i in range(1, 22)]
    wide = await cmdb.call(gateway, api, {"conditions": where(*ors, condition="OR"),
                                          "page": page}, OBJ)  # fmt: skip
    assert len(wide.doc["data"]["info"]) == 21  # querybuilder would refuse 21 OR rules
    too_many = where(*[rule("bk_inst_id", "equal", i) for i in range(51)])
    refused = await cmdb.call(gateway, api, {"conditions": too_many, "page": page}, OBJ)
    expr = json.dumps(too_many, separators=(",", ":"))
    assert (
        refused.doc["message"] == f"'conditions: {expr}' data parameter verification does not pass"
    )


# --- find_object_association (audit 29; 2.G) -----------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_find_object_association_rules(cmdb: Cmdb, gateway: str) -> None:
    api = "find_object_association"

    async def ask(body: Any) -> Any:
        return (await cmdb.call(gateway, api, body)).doc

    # svc/object_association.go:65-73 + mapstr.go:268-277.
    not_map = await ask({"condition": [1]})
    assert (not_map["code"], not_map["message"]) == (
        1199011, "the value of the key(condition) is not a map[string]interface{} type"
    )  # fmt: skip
    for empty in ({"condition": {}}, {"condition": None}, {"bk_obj_id": ""}, {}):
        got = await ask(empty)
        assert (got["code"], got["message"]) == (
            1199011, "'%s' the parameter is invalid or does not exist"
        ), empty  # fmt: skip
    assert (await ask({"bk_obj_id": 5}))["data"] == []  # mapstr.String stringifies numbers
    # No operator whitelist; MongoDB evaluates.
    found = await ask({"condition": {"bk_obj_asst_id": {"$regex": "^bk_switch_c"},
                                     "mapping": {"$in": ["n:n"]}}})  # fmt: skip
    assert [m["bk_obj_asst_id"] for m in found["data"]] == [CONNECT]
    # checkDangerousOps (dal/mongo/local/mongo.go:486-508), v3.14.8.
    where_op = await ask({"condition": {"$where": "1"}})
    assert (where_op["code"], where_op["message"]) == (1199998, 'operator "$where" is forbidden')


# --- language (audit 32) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gateway", "header", "english"),
    [("esb", None, True), ("esb", "en", True), ("esb", "en-US", False), ("esb", "EN", False),
     ("apigw", "en", True), ("apigw", "EN", False), ("apigw", None, False)],
)  # fmt: skip
async def test_language_is_exactly_en(
    cmdb: Cmdb, gateway: str, header: str | None, english: bool
) -> None:
    # src/common/errors/error.go:140-150; esb/component/base.py:294 defaults to "en".
    name = "Blueking-Language" if gateway == "esb" else "X-Bkcmdb-Language"
    hdrs = {} if header is None else {name: header}
    if gateway == "esb":
        answer = await cmdb.esb(SEARCH, {"bk_obj_id": "bk_switch"}, lang=None, headers=hdrs)
    else:
        answer = await cmdb.gw("POST", "/api/v3/search/instance_associations/object/bk_switch",
                               {}, lang=None, headers=hdrs)  # fmt: skip
    en = "'page.limit' data parameter verification does not pass"
    assert answer.doc["message"] == (en if english else "'page.limit' 数据参数校验不通过")


# --- ESB (audit 34-37; 2.J) ----------------------------------------------------------------


async def test_esb_header_credentials_come_first(cmdb: Cmdb) -> None:
    # esb/channel/base.py:331-354.
    body = {"bk_obj_id": "bk_switch"}
    header = json.dumps(APP | {"bk_username": "admin"})
    wrong_body = {"bk_app_code": "syncd", "bk_app_secret": "wrong", "bk_username": "x"}
    ok = await cmdb.esb("count_instance_associations", body, creds=wrong_body,
                        headers={"X-Bkapi-Authorization": header})  # fmt: skip
    assert ok.doc["code"] == 0
    bad = await cmdb.esb(
        "count_instance_associations", body, headers={"X-Bkapi-Authorization": "{x"}
    )
    assert (bad.doc["code"], bad.doc["message"]) == (
        1306406,
        "Parameters error, request header X-Bkapi-Authorization is not a valid JSON format string",
    )


@pytest.mark.parametrize("options", [SimulatorOptions(rate_limit=2)])
async def test_rate_limit_is_per_app_and_resource(cmdb: Cmdb) -> None:
    # bk_apigw_resources_bk-cmdb.yaml:3206-3212: bk-rate-limit per resource, per app.
    count = "/api/v3/count/instance_associations/object/bk_switch"
    search = "/api/v3/search/instance_associations/object/bk_switch"
    codes = [code_of((await cmdb.gw("POST", count, {})).doc) for _ in range(3)]
    assert codes == [0, 0, 1642903]
    assert (await cmdb.gw("POST", search, {"page": {"limit": 1}})).doc["code"] == 0
    other = {"bk_app_code": "other", "bk_app_secret": "other-secret", "bk_username": "u"}
    assert (await cmdb.gw("POST", count, {}, auth=other)).doc["code"] == 0


@pytest.mark.parametrize("options", [SimulatorOptions(fault_rate=1.0, fault_kinds=("504",))])
async def test_apigw_504_names_the_upstream_error(cmdb: Cmdb) -> None:
    # apigw: api_response_err_code_en.md:408-415.
    answer = await cmdb.batch("apigw", [(2, 110)])
    assert answer.status == 504
    assert answer.doc["message"] == (
        'Request backend service timeout [upstream_error="cannot read header from upstream"]'
    )


@pytest.mark.parametrize("options", [SimulatorOptions(max_in_flight=1, latency_ms=100)])
async def test_esb_has_no_concurrency_limiter(cmdb: Cmdb) -> None:
    answers = await asyncio.gather(*(cmdb.batch("esb", [(2, 110 + i)]) for i in range(3)))
    assert [a.doc["code"] for a in answers] == [0, 0, 0]
