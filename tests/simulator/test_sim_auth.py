"""Authorization on (bk-cmdb's default): the API server's attribute parse before topo.

``authFilter`` -> ``verifyAuthorizeStatus`` -> ``parser.ParseAttribute``
(src/apiserver/service/filter.go:242-275): a parse error is a bare BaseResp with
1199045 and the raw Go error text, the same in every language, with
``bk_error_code``/``bk_error_msg`` and no ``data`` behind the API gateway and
``code``/``message`` (+ ``data: null``) through ESB.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from sim_client import CONNECT, GATEWAYS, LANGS, Answer, Cmdb, fixture_doc

from cmdb_simulator import Fixture, FixtureError, Simulator, SimulatorOptions
from cmdb_simulator import cli as sim_cli

API = "batch_create_instance_association"


def batch(pairs: list[tuple[Any, Any]], **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": CONNECT,
        "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in pairs],
    }
    doc.update(over)
    return doc


def parse_failure(answer: Answer, gateway: str, text: str) -> None:
    assert answer.status == 200
    doc = dict(answer.doc)
    if gateway == "esb":
        assert doc.pop("request_id")
        assert doc == {"result": False, "code": 1199045, "data": None, "message": text,
                       "permission": None}  # fmt: skip
    else:
        assert doc == {"result": False, "bk_error_code": 1199045, "bk_error_msg": text,
                       "permission": None}  # fmt: skip


# (body, raw Go text) -- each pinned to its source line.
BATCH_PARSE = [
    # util.go:163-176 getModelAssociation; topolatest.go:649-659.
    pytest.param(batch([(2, 102)], bk_obj_asst_id="nope"),
                 "model association [map[bk_obj_asst_id:nope]] not found", id="unknown-asst"),
    pytest.param(batch([(2, 102)], bk_obj_asst_id=""),
                 "model association [map[bk_obj_asst_id:]] not found", id="empty-asst"),
    pytest.param({k: v for k, v in batch([(2, 102)]).items() if k != "bk_obj_asst_id"},
                 "model association [map[bk_obj_asst_id:]] not found", id="missing-asst"),
    # topolatest.go:686-698: ids <= 0 (gjson Int(): a missing id is 0).
    pytest.param(batch([(2, 102), (0, 103)]), "invalid bk_inst_id value", id="src-zero"),
    pytest.param(batch([(2, -5)]), "invalid bk_asst_inst_id value", id="dst-negative"),
    pytest.param(batch([(2, 102)], details=[{"bk_inst_id": 2}]),
                 "invalid bk_asst_inst_id value", id="dst-missing"),
    # util.go:437-448: a host with no host-module relation (no such host) fails it all.
    pytest.param(batch([(2, 102), (3, 999), (4, 103)]), "host 999 has no relations",
                 id="stale-host"),
    # Details are parsed in order: the first failure wins.
    pytest.param(batch([(2, 998), (0, 103)]), "host 998 has no relations", id="order-host"),
    pytest.param(batch([(0, 998)]), "invalid bk_inst_id value", id="order-id"),
    # The parse comes before topo's 1199038/1199035 (topo would say details empty/over 200).
    pytest.param(batch([(2, 102)], bk_obj_asst_id="bk_switch_uplink_host", details=[]),
                 "model association [map[bk_obj_asst_id:bk_switch_uplink_host]] not found",
                 id="before-topo-checks"),
]  # fmt: skip


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("doc", "text"), BATCH_PARSE)
async def test_batch_parse_stage(
    cmdb: Cmdb, gateway: str, lang: str, doc: dict[str, Any], text: str
) -> None:
    answer = await cmdb.call(gateway, API, doc, lang=lang)
    parse_failure(answer, gateway, text)
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}
    assert cmdb.sim.stats()["requests_by_code"] == {"1199045": 1}


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_a_missing_switch_is_still_per_index(cmdb: Cmdb, gateway: str) -> None:
    # util.go:516-527: custom-object instances are not looked up by the parser.
    answer = await cmdb.batch(gateway, [(2, 110), (999, 111)])
    assert answer.doc["code"] == 0
    assert answer.doc["data"] == {
        "success_created": {"0": 2},
        "error_msg": {"1": "the association inst is not exist"},
    }


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("lang", LANGS)
async def test_topo_checks_still_follow_the_parse(cmdb: Cmdb, gateway: str, lang: str) -> None:
    # A known bk_obj_asst_id with good ids passes the parse; topo's Validate then answers.
    answer = await cmdb.call(gateway, API, batch([(2, 102)], bk_obj_id="router"), lang=lang)
    assert (answer.doc["code"], answer.doc["message"]) == (
        (1199006, "'bk_obj_id' data parameter verification does not pass")
        if lang == "en"
        else (1199006, "'bk_obj_id' 数据参数校验不通过")
    )
    # A numeric string id passes gjson's Int() in the parser, then fails Go's decode.
    typed = await cmdb.call(gateway, API, batch([("2", 102)]), lang=lang)
    assert typed.doc["code"] == 1199000


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_single_create_parse_stage(cmdb: Cmdb, gateway: str) -> None:
    api = "add_instance_association"
    cases = [
        ({"bk_obj_asst_id": "nope", "bk_inst_id": 2, "bk_asst_inst_id": 102},
         "model association [map[bk_obj_asst_id:nope]] not found"),
        ({"bk_obj_asst_id": CONNECT, "bk_inst_id": 0, "bk_asst_inst_id": 102},
         "invalid bk_inst_id value"),
        ({"bk_obj_asst_id": CONNECT, "bk_inst_id": 2, "bk_asst_inst_id": 999},
         "host 999 has no relations"),
    ]  # fmt: skip
    for body, text in cases:  # topolatest.go:561-630
        parse_failure(await cmdb.call(gateway, api, body), gateway, text)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_delete_without_object_fails_the_parse(cmdb: Cmdb, gateway: str) -> None:
    api = "delete_related_inst_asso"
    # topolatest.go:806-835 / util.go:41-50: getOneModel({bk_obj_id: Value()}).
    missing = await cmdb.call(gateway, api, {"id": [1]})
    parse_failure(missing, gateway, "model [map[bk_obj_id:<nil>]] not found")
    unknown = await cmdb.call(gateway, api, {"id": [1], "bk_obj_id": "router"})
    parse_failure(unknown, gateway, "model [map[bk_obj_id:router]] not found")
    # It comes before topo's 1199003 (no ids).
    empty = await cmdb.call(gateway, api, {"id": []})
    parse_failure(empty, gateway, "model [map[bk_obj_id:<nil>]] not found")
    assert cmdb.sim.pairs(CONNECT) == {(1, 101)}


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_single_delete_looks_the_association_up(cmdb: Cmdb, gateway: str) -> None:
    # topolatest.go:734-800 + util.go:178-194: an unknown id fails the parse.
    api = "delete_instance_association"
    unknown = await cmdb.call(gateway, api, params={"bk_obj_id": "bk_switch", "id": 77})
    parse_failure(unknown, gateway, "model association [map[id:77]] not found")
    known = await cmdb.call(gateway, api, params={"bk_obj_id": "bk_switch", "id": 1})
    assert known.doc["code"] == 0 and cmdb.sim.pairs(CONNECT) == set()


@pytest.mark.parametrize("options", [SimulatorOptions(auth=False)])
@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_auth_off_gives_the_topo_answers(cmdb: Cmdb, gateway: str) -> None:
    answer = await cmdb.batch(gateway, [(2, 110), (3, 999)])
    assert answer.doc["data"]["error_msg"] == {"1": "the  inst to asst  is not exist"}
    unknown = await cmdb.batch(gateway, [(2, 110)], asst="bk_switch_uplink_host")
    assert unknown.doc["code"] == 1101046
    delete = await cmdb.call(gateway, "delete_related_inst_asso", {"id": [1]})
    assert (delete.doc["code"], delete.doc["message"]) == (1199010, "'bk_obj_id' unassigned")


async def test_fixture_and_options_choose_auth(cmdb: Cmdb) -> None:
    assert cmdb.sim.auth is True  # bk-cmdb's default (src/common/auth/auth.go:29)
    doc = fixture_doc() | {"auth": False}
    assert Simulator(Fixture.from_dict(doc)).auth is False
    assert Simulator(Fixture.from_dict(doc), SimulatorOptions(auth=True)).auth is True
    with pytest.raises(FixtureError, match="auth: must be true or false"):
        Fixture.from_dict(fixture_doc() | {"auth": "no"})
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    assert parser.parse_args(["--fixture", "f"]).auth is None
    assert parser.parse_args(["--fixture", "f", "--auth", "off"]).auth is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--fixture", "f", "--auth", "maybe"])
