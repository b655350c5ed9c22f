"""Per-index and request-level classification, against the sheet's texts in both languages."""

from __future__ import annotations

import json

import pytest

from syncd.core.answer import Verdict, classify_response, classify_transport_error
from syncd.core.details import BadAnswer, IndexKind, classify_index_message, split_batch_data

MESSAGES = [
    ("关联关系 bk_switch->host 重复", IndexKind.EXISTS),
    ("the associations bk_switch->host already exist", IndexKind.EXISTS),
    (
        "E11000 duplicate key error collection: cmdb.cc_InstAsst index: idx_unique",
        IndexKind.EXISTS,
    ),
    ("关联实例不存在", IndexKind.MISSING_SOURCE),
    ("the association inst is not exist", IndexKind.MISSING_SOURCE),
    ("被关联实例不存在", IndexKind.MISSING_TARGET),
    ("the  inst to asst  is not exist", IndexKind.MISSING_TARGET),
    ("关联关系为1:1的，不能同时关联多个实例", IndexKind.CONFLICT_1_1),
    ("can not create multiple instance association for a 1:1 association.", IndexKind.CONFLICT_1_1),
    ("关联关系为1:n的，不能同时关联多个源模型实例", IndexKind.CONFLICT_1_N),
    (
        "The relationship is 1:n, and multiple source model instances cannot be associated "
        "at the same time.",
        IndexKind.CONFLICT_1_N,
    ),
    ("something else entirely", IndexKind.OTHER),
    ("", IndexKind.OTHER),
]


@pytest.mark.parametrize(("message", "kind"), MESSAGES)
def test_index_messages(message: str, kind: IndexKind) -> None:
    assert classify_index_message(message) is kind


def test_kind_properties() -> None:
    assert IndexKind.CREATED.is_known and IndexKind.EXISTS.is_known
    assert not IndexKind.OTHER.is_known
    assert IndexKind.CONFLICT_1_N.is_conflict and IndexKind.CONFLICT_1_1.is_conflict
    assert IndexKind.MISSING_TARGET.is_missing and not IndexKind.CONFLICT_1_1.is_missing


def test_split_accounts_for_every_index() -> None:
    data = {
        "success_created": {"0": 73, "2": "75"},
        "error_msg": {"1": "关联实例不存在", "3": "the associations a->b already exist"},
    }
    results = split_batch_data(data, 6)
    assert [r.index for r in results] == [0, 1, 2, 3, 4, 5]
    assert results[0].kind is IndexKind.CREATED and results[0].association_id == 73
    assert results[1].kind is IndexKind.MISSING_SOURCE and results[1].message == "关联实例不存在"
    assert results[2].association_id == 75
    assert results[3].kind is IndexKind.EXISTS
    assert results[4].kind is IndexKind.OTHER and "missing" in results[4].message
    assert results[5].kind is IndexKind.OTHER


def test_split_rejects_contradictions() -> None:
    results = split_batch_data({"success_created": {"0": 1}, "error_msg": {"0": "x"}}, 1)
    assert results[0].kind is IndexKind.OTHER and "both" in results[0].message
    results = split_batch_data({"success_created": {"0": "abc"}}, 1)
    assert results[0].kind is IndexKind.OTHER
    results = split_batch_data({"success_created": {"0": True}}, 1)
    assert results[0].kind is IndexKind.OTHER
    with pytest.raises(BadAnswer):
        split_batch_data(None, 1)
    with pytest.raises(BadAnswer):
        split_batch_data({"success_created": [1]}, 1)


def body(**doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_ok_envelope() -> None:
    ans = classify_response(
        200, {}, body(result=True, code=0, message="", request_id="r1", data={"x": 1})
    )
    assert ans.verdict is Verdict.OK and ans.data == {"x": 1} and ans.request_id == "r1"


def test_request_id_from_headers() -> None:
    ans = classify_response(
        200, {"X-Bkapi-Request-ID": "gw-1"}, body(result=True, code=0, message="", data=None)
    )
    assert ans.request_id == "gw-1"


@pytest.mark.parametrize(
    ("status", "headers", "doc", "verdict"),
    [
        (
            429,
            {"X-Bkapi-RateLimit-Reset": "0.4"},
            {"result": False, "code": 1642903},
            Verdict.RETRY,
        ),
        (429, {}, {"result": False, "code": 1642904}, Verdict.RETRY),
        (200, {}, {"result": False, "code": 1306429, "message": "freq"}, Verdict.RETRY),
        (502, {}, {"result": False, "code": 1650200}, Verdict.RETRY),
        (
            200,
            {},
            {"result": False, "bk_error_code": 1199997, "bk_error_msg": "busy"},
            Verdict.RETRY,
        ),
        (200, {}, {"result": False, "code": 1113053}, Verdict.RETRY),
        (504, {}, {"result": False, "code": 1650401}, Verdict.AMBIGUOUS),
        (200, {}, {"result": False, "code": 1306201}, Verdict.AMBIGUOUS),
        (500, {}, {"result": False, "code": 1}, Verdict.AMBIGUOUS),
        (200, {}, {"result": False, "code": 1306000, "message": "app"}, Verdict.RELATION),
        (400, {}, {"result": False, "code": 1640001}, Verdict.RELATION),
        (403, {}, {"result": False, "code": 1640301}, Verdict.RELATION),
        (404, {}, {"result": False, "code": 1640401}, Verdict.RELATION),
        (
            200,
            {},
            {"result": False, "bk_error_code": 9900403, "permission": {"a": 1}},
            Verdict.RELATION,
        ),
        (200, {}, {"result": False, "code": 1101046}, Verdict.RELATION),
        (200, {}, {"result": False, "code": 1199006}, Verdict.RELATION),
        (200, {}, {"result": False, "code": 1109005, "message": "audit"}, Verdict.AMBIGUOUS),
        (200, {}, {"result": False, "code": 1199999, "message": "other"}, Verdict.FAILED),
    ],
)
def test_request_level(
    status: int, headers: dict[str, str], doc: dict[str, object], verdict: Verdict
) -> None:
    ans = classify_response(status, headers, body(**doc))
    assert ans.verdict is verdict
    if verdict is Verdict.RELATION:
        assert ans.hint


def test_retry_after_hints() -> None:
    ans = classify_response(429, {"x-bkapi-ratelimit-reset": "2"}, b"{}")
    assert ans.retry_after == 2.0
    ans = classify_response(429, {"Retry-After": "nonsense"}, b"{}")
    assert ans.retry_after is None


def test_iam_permission_is_kept() -> None:
    perm = {"actions": [{"id": "edit_inst"}]}
    ans = classify_response(
        200, {}, body(result=False, bk_error_code=9900403, bk_error_msg="no", permission=perm)
    )
    assert ans.permission == perm and ans.code == 9900403 and ans.message == "no"
    assert "IAM" in ans.hint


@pytest.mark.parametrize(
    ("status", "payload", "verdict"),
    [
        (200, b"<html>proxy</html>", Verdict.AMBIGUOUS),
        (200, b"", Verdict.AMBIGUOUS),
        (502, b"Bad Gateway", Verdict.RETRY),
        (404, b"not found", Verdict.RELATION),
        (200, b"[1,2]", Verdict.AMBIGUOUS),
    ],
)
def test_non_json(status: int, payload: bytes, verdict: Verdict) -> None:
    ans = classify_response(status, {}, payload)
    assert ans.verdict is verdict and ans.message


def test_transport_errors() -> None:
    assert classify_transport_error(ConnectionRefusedError(), sent=False).verdict is Verdict.RETRY
    ans = classify_transport_error(TimeoutError(), sent=True)
    assert ans.verdict is Verdict.AMBIGUOUS and ans.message == "TimeoutError"


def test_error_line() -> None:
    ans = classify_response(429, {}, body(result=False, code=1642903, message="rate"))
    assert ans.error == "HTTP 429: code 1642903: rate"


def test_split_all_created_fast_path_matches_slow_path() -> None:
    fast = split_batch_data({"success_created": {"0": 5, "1": 6}, "error_msg": {}}, 2)
    assert [(r.index, r.kind, r.association_id) for r in fast] == [
        (0, IndexKind.CREATED, 5),
        (1, IndexKind.CREATED, 6),
    ]
    # A string id or a missing index leaves the fast path and is judged per index.
    slow = split_batch_data({"success_created": {"0": 5, "1": "6"}}, 2)
    assert [r.association_id for r in slow] == [5, 6]
    gap = split_batch_data({"success_created": {"0": 5, "2": 7}}, 2)
    assert gap[1].kind is IndexKind.OTHER
