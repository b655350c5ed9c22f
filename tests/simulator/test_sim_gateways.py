"""The gateways' own envelopes: credentials, unknown APIs, malformed JSON, request ids."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sim_client import APP, Cmdb

COUNT_PATH = "/api/v3/count/instance_associations/object/bk_switch"
NO_USER = (
    "user authentication failed, please provide a valid user identity, "
    "such as bk_username, bk_token, access_token"
)


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        pytest.param(None, "app code cannot be empty", id="no-header"),
        pytest.param(
            {"bk_app_secret": "x", "bk_username": "a"}, "app code cannot be empty", id="no-code"
        ),
        pytest.param(
            {"bk_app_code": "syncd", "bk_username": "a"},
            "please provide bk_app_secret or bk_signature to verify app",
            id="no-secret",
        ),
        pytest.param(
            {"bk_app_code": "syncd", "bk_app_secret": "wrong", "bk_username": "a"},
            "bk_app_code or bk_app_secret is incorrect",
            id="bad-secret",
        ),
        pytest.param(
            {"bk_app_code": "ghost", "bk_app_secret": "change-me", "bk_username": "a"},
            "bk_app_code or bk_app_secret is incorrect",
            id="unknown-app",
        ),
        pytest.param(APP, NO_USER, id="no-user"),
    ],
)
async def test_apigw_credentials(cmdb: Cmdb, auth: dict[str, Any] | None, reason: str) -> None:
    answer = await cmdb.gw("POST", COUNT_PATH, {}, auth=auth)
    message = f'Parameters error [reason="{reason}"]'
    assert answer.status == 400
    assert answer.doc == {
        "result": False,
        "code": 1640001,
        "code_name": "INVALID_ARGS",
        "message": message,
        "data": None,
    }
    assert answer.headers["X-Bkapi-Error-Code"] == "1640001"
    assert answer.headers["X-Bkapi-Error-Message"] == message
    assert answer.headers["X-Bkapi-Request-ID"]


async def test_apigw_accepts_token_and_any_stage(cmdb: Cmdb) -> None:
    answer = await cmdb.gw("POST", COUNT_PATH, {}, auth=APP | {"bk_token": "t"}, stage="stag")
    assert answer.status == 200 and answer.doc["result"] is True


@pytest.mark.parametrize(
    ("creds", "message"),
    [
        pytest.param({}, "APP Code [bk_app_code] cannot be empty", id="no-code"),
        pytest.param(
            {"bk_app_code": "syncd", "bk_username": "a"},
            "APP Secret [bk_app_secret] cannot be empty",
            id="no-secret",
        ),
        pytest.param(
            {"bk_app_code": "ghost", "bk_app_secret": "x", "bk_username": "a"},
            "Invalid APP Code [bk_app_code=ghost], "
            "please confirm if the APP Code has been registered",
            id="unknown-app",
        ),
        pytest.param(
            {"bk_app_code": "syncd", "bk_app_secret": "x", "bk_username": "a"},
            "APP Secret verification failed, pelase confirm if the APP Secret and APP Code "
            "[bk_app_code=syncd] match",
            id="bad-secret",
        ),
        pytest.param(
            APP,
            "User authentication failed, please provide a valid user identity, "
            "such as bk_token, bk_username",
            id="no-user",
        ),
    ],
)
async def test_esb_credentials(cmdb: Cmdb, creds: dict[str, Any], message: str) -> None:
    answer = await cmdb.esb("count_instance_associations", {"bk_obj_id": "bk_switch"}, creds=creds)
    assert answer.status == 200
    assert answer.doc["result"] is False
    assert answer.doc["code"] == 1306000
    assert answer.doc["message"] == message
    assert answer.doc["data"] is None
    assert len(answer.doc["request_id"]) == 32


async def test_esb_reads_credentials_from_header_too(cmdb: Cmdb) -> None:
    header = json.dumps(APP | {"bk_username": "admin"})
    answer = await cmdb.esb(
        "count_instance_associations",
        {"bk_obj_id": "bk_switch"},
        creds={},
        headers={"X-Bkapi-Authorization": header},
    )
    assert answer.doc["result"] is True and answer.doc["data"] == {"count": 1}


async def test_unknown_api(cmdb: Cmdb) -> None:
    wrong_path = await cmdb.gw("POST", "/api/v3/create/nothing", {})
    assert wrong_path.status == 404
    assert wrong_path.doc["code"] == 1640401 and wrong_path.doc["code_name"] == "API_NOT_FOUND"
    assert wrong_path.doc["message"].startswith(
        'API not found [method="POST" path="/api/bk-cmdb/prod/'
    )
    assert wrong_path.headers["X-Bkapi-Error-Code"] == "1640401"
    wrong_method = await cmdb.gw("GET", "/api/v3/createmany/instassociation")
    assert wrong_method.status == 404 and wrong_method.doc["code"] == 1640401
    esb = await cmdb.esb("no_such_api", {})
    assert esb.status == 200
    assert (esb.doc["code"], esb.doc["message"]) == (
        1306404,
        "Not found, component class not found",
    )
    elsewhere = await cmdb.raw("GET", "/nothing/here")
    assert elsewhere.status == 404 and elsewhere.doc["code"] == 1640401


async def test_malformed_json(cmdb: Cmdb) -> None:
    # Auth on: the API server's gjson parse finds no bk_obj_asst_id in a body that is not
    # JSON (src/ac/parser/topolatest.go:649-659) before topo's decode is reached.
    gw = await cmdb.gw("POST", "/api/v3/createmany/instassociation", data=b"{not json", lang="zh")
    assert gw.status == 200
    assert gw.doc == {
        "result": False,
        "bk_error_code": 1199045,
        "bk_error_msg": "model association [map[bk_obj_asst_id:]] not found",
        "permission": None,
    }
    header = json.dumps(APP | {"bk_username": "admin"})
    esb = await cmdb.esb(
        "search_instance_associations",
        data=b"[1, 2",
        headers={"X-Bkapi-Authorization": header},
    )
    assert (esb.doc["code"], esb.doc["message"]) == (1199000, "Deserializing JSON data failed")
    cmdb.sim.options.auth = False
    topo = await cmdb.gw("POST", "/api/v3/createmany/instassociation", data=b"{not", lang="zh")
    assert topo.doc == {
        "result": False,
        "code": 1199000,
        "message": "反序列化JSON数据失败",
        "permission": None,
        "data": None,
    }
    assert "request_id" in esb.doc
    # Valid JSON of the wrong shape is the same failure.
    shape = await cmdb.gw("POST", "/api/v3/createmany/instassociation", [1, 2])
    assert shape.doc["code"] == 1199000


async def test_request_ids(cmdb: Cmdb) -> None:
    own = await cmdb.gw("POST", COUNT_PATH, {}, headers={"X-Request-ID": "my-trace-1"})
    assert own.headers["X-Request-ID"] == "my-trace-1"
    assert own.headers["X-Bkapi-Request-ID"] not in ("", "my-trace-1")
    assert "request_id" not in own.doc
    assert own.doc == {
        "result": True,
        "code": 0,
        "message": "success",
        "permission": None,
        "data": {"count": 1},
    }
    fresh = await cmdb.gw("POST", COUNT_PATH, {})
    assert fresh.headers["X-Request-ID"] == fresh.headers["X-Bkapi-Request-ID"]
    esb = await cmdb.esb("count_instance_associations", {"bk_obj_id": "bk_switch"})
    assert esb.doc["result"] is True and len(esb.doc["request_id"]) == 32
