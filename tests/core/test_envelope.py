"""Every envelope the real paths send (ESB, API gateway, the CMDB's own filters), both languages."""

from __future__ import annotations

import json

import pytest

from syncd.core.answer import Answer, Verdict, classify_response
from syncd.core.details import BadAnswer, IndexKind, split_batch_data


def classify(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return classify_response(status, headers or {}, json.dumps(doc, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "doc",
    [
        # ESB rewrites everything to code/message, with data and permission.
        {"result": False, "code": 9900403, "message": "没有操作的权限", "data": None,
         "permission": {"actions": [{"id": "edit_inst"}]}, "request_id": "esb-1"},
        # The API server's own filters on the gateway: bk_error_*, no data key.
        {"result": False, "bk_error_code": 9900403,
         "bk_error_msg": "Do not have access permission.",
         "permission": {"actions": [{"id": "edit_inst"}]}},
        # A relay carrying both spellings, one of them empty.
        {"result": False, "code": 0, "message": "", "bk_error_code": 9900403,
         "bk_error_msg": "Do not have access permission.", "permission": {"actions": []}},
    ],
)  # fmt: skip
def test_permission_in_every_envelope(doc: dict[str, object]) -> None:
    ans = classify(doc)
    assert ans.verdict is Verdict.RELATION
    assert ans.code == 9900403
    assert ans.message
    assert ans.permission is not None
    assert "permission" in ans.hint


def test_code_as_a_string_and_no_data_key() -> None:
    ans = classify(
        {"result": False, "bk_error_code": "1199045", "bk_error_msg": "host 9 has no relations"}
    )
    assert ans.code == 1199045 and ans.data is None
    # About a detail (syncd.core.refusal names it), not the relation; the hint still explains.
    assert ans.verdict is Verdict.FAILED
    assert "does not exist" in ans.hint


@pytest.mark.parametrize(
    ("headers", "doc", "request_id"),
    [
        ({}, {"result": False, "code": 1, "request_id": "esb-7"}, "esb-7"),
        ({"X-Bkapi-Request-ID": "gw-1", "X-Request-ID": "cc-1"}, {"result": False, "code": 1},
         "gw-1"),
        ({"x-request-id": "cc-2"}, {"result": False, "code": 1}, "cc-2"),
        ({"Cc_Request_Id": "cc-3"}, {"result": False, "code": 1, "request_id": ""}, "cc-3"),
        ({"X-Bkapi-Request-ID": "gw-2"}, {"result": False, "code": 1, "request_id": None}, "gw-2"),
    ],
)  # fmt: skip
def test_request_ids(headers: dict[str, str], doc: dict[str, object], request_id: str) -> None:
    assert classify(doc, headers=headers).request_id == request_id


def test_request_id_of_a_non_json_answer_comes_from_headers() -> None:
    ans = classify_response(502, {"X-Bkapi-Request-ID": "gw-9"}, b"<html>bad gateway</html>")
    assert ans.request_id == "gw-9" and ans.verdict is Verdict.RETRY


@pytest.mark.parametrize(
    "doc",
    [
        {"result": False, "code": 0},
        {"result": False, "code": 0, "message": "", "data": {"hint": "x"}},
        {"result": False, "bk_error_code": 0, "bk_error_msg": ""},
        {"result": False},
    ],
)
def test_result_false_with_code_zero_says_what_it_said(doc: dict[str, object]) -> None:
    ans = classify(doc)
    assert ans.verdict is Verdict.FAILED
    assert ans.error != "no answer"
    assert "result false" in ans.error and '"result": false' in ans.error


def test_result_false_with_code_zero_keeps_its_message() -> None:
    ans = classify({"result": False, "code": 0, "message": "数据库错误"})
    assert ans.verdict is Verdict.FAILED and ans.error == "数据库错误"


@pytest.mark.parametrize(
    ("message", "hint_part"),
    [
        ("model association [map[bk_obj_asst_id:nope]] not found", "bk_obj_asst_id"),
        ("model [map[bk_obj_id:<nil>]] not found", "bk_obj_id"),
        ("invalid bk_inst_id value", "<= 0"),
        ("host 9 has no relations", "decommissioned hosts"),
    ],
)
def test_parse_failure_hints_follow_the_text(message: str, hint_part: str) -> None:
    ans = classify({"result": False, "bk_error_code": 1199045, "bk_error_msg": message})
    assert hint_part in ans.hint


def test_ok_answers_from_both_gateways() -> None:
    esb = classify({"result": True, "code": 0, "message": "success", "data": {"a": 1}})
    gw = classify({"result": True, "bk_error_code": 0, "bk_error_msg": "success", "data": {"a": 1}})
    for ans in (esb, gw):
        assert ans.verdict is Verdict.OK and ans.data == {"a": 1}


# -- association ids in a batch answer ---------------------------------------------------


@pytest.mark.parametrize(
    ("created", "why"),
    [
        ({"0": 5, "1": 5}, "given for two details"),
        ({"0": 5, "1": "5"}, "given for two details"),
        ({"0": 0, "1": 6}, "not positive"),
        ({"0": -3}, "not positive"),
    ],
)
def test_bad_association_ids_make_a_bad_answer(created: dict[str, object], why: str) -> None:
    with pytest.raises(BadAnswer, match=why):
        split_batch_data({"success_created": created, "error_msg": {}}, len(created))


def test_bad_ids_are_caught_with_errors_present_too() -> None:
    with pytest.raises(BadAnswer, match="two details"):
        split_batch_data({"success_created": {"0": 7, "2": 7}, "error_msg": {"1": "x"}}, 3)


def test_good_ids_pass() -> None:
    results = split_batch_data({"success_created": {"0": 1, "1": 2}, "error_msg": {}}, 2)
    assert [r.association_id for r in results] == [1, 2]
    assert {r.kind for r in results} == {IndexKind.CREATED}
