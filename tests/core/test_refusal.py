"""Reading a whole-request refusal of a batch create (bk-cmdb auth-parse texts, both envelopes)."""

from __future__ import annotations

import json

import pytest

from syncd.core.answer import Answer, Verdict, classify_response
from syncd.core.backoff import pair_next_attempt
from syncd.core.details import IndexKind
from syncd.core.refusal import Scope, looked_up_sides, read_refusal

SWITCH_HOST = looked_up_sides("bk_switch", "host")
DETAILS = [(1, 1001), (2, 999), (3, 1002), (4, 999), (999, 1003)]


def refused(doc: dict[str, object], status: int = 200) -> Answer:
    return classify_response(status, {}, json.dumps(doc, ensure_ascii=False).encode())


def apigw(code: int, message: str) -> Answer:
    """The API server's BaseResp as the gateway relays it: bk_error_* keys, no data."""
    return refused({"result": False, "bk_error_code": code, "bk_error_msg": message})


def esb(code: int, message: str) -> Answer:
    """ESB's rewrite: code/message, data and permission, request_id in the body."""
    return refused(
        {
            "result": False,
            "code": code,
            "message": message,
            "data": None,
            "permission": None,
            "request_id": "e1",
        }
    )


def test_looked_up_sides() -> None:
    assert SWITCH_HOST == (False, True)
    assert looked_up_sides("host", "bk_switch") == (True, False)
    assert looked_up_sides("host", "host") == (True, True)
    assert looked_up_sides("set", "module") == (True, True)
    # Neither side known: a custom mainline level may be looked up, let the id decide.
    assert looked_up_sides("bk_rack", "bk_switch") == (True, True)


@pytest.mark.parametrize("envelope", [apigw, esb])
def test_missing_host_names_every_detail_on_the_host_side(envelope: object) -> None:
    answer = envelope(1199045, "host 999 has no relations")  # type: ignore[operator]
    refusal = read_refusal(answer, DETAILS, SWITCH_HOST)
    assert refusal.scope is Scope.DETAILS
    # Detail 4's *switch* is 999 too, but switch ids are never looked up: not named.
    assert dict(refusal.named) == {1: IndexKind.MISSING_TARGET, 3: IndexKind.MISSING_TARGET}


def test_missing_host_on_the_source_side() -> None:
    details = [(999, 5), (1000, 5), (5, 999)]
    refusal = read_refusal(
        apigw(1199045, "host 999 has no relations"), details, looked_up_sides("host", "bk_switch")
    )
    assert dict(refusal.named) == {0: IndexKind.MISSING_SOURCE}
    both = read_refusal(apigw(1199045, "host 999 has no relations"), details, (True, True))
    assert dict(both.named) == {0: IndexKind.MISSING_SOURCE, 2: IndexKind.MISSING_TARGET}


def test_host_in_many_dirs_is_named_but_not_missing() -> None:
    refusal = read_refusal(apigw(1199045, "host 1002 is in many dirs"), DETAILS, SWITCH_HOST)
    assert refusal.scope is Scope.DETAILS and dict(refusal.named) == {2: IndexKind.OTHER}


@pytest.mark.parametrize(
    ("message", "details", "named"),
    [
        ("invalid bk_inst_id value", [(1, 2), (0, 3), (-4, 5), (6, 0)], {1, 2}),
        ("invalid bk_asst_inst_id value", [(1, 2), (0, 3), (6, 0)], {2}),
        # An id beyond int64 is read as negative by the parser: invalid too.
        ("invalid bk_asst_inst_id value", [(1, 2**63), (2, 3)], {0}),
    ],
)
def test_invalid_ids(message: str, details: list[tuple[int, int]], named: set[int]) -> None:
    refusal = read_refusal(apigw(1199045, message), details, SWITCH_HOST)
    assert refusal.scope is Scope.DETAILS
    assert set(refusal.named) == named
    assert set(refusal.named.values()) == {IndexKind.INVALID_ID}


@pytest.mark.parametrize(
    "answer",
    [
        apigw(1199045, "model association [map[bk_obj_asst_id:nope]] not found"),
        apigw(1199045, "model [map[bk_obj_id:<nil>]] not found"),
        esb(9900403, "没有操作的权限"),
        apigw(9900403, "Do not have access permission."),
        apigw(1199046, "鉴权失败"),
        apigw(1199047, "Do not have access permission."),
        esb(1306000, "app code or app secret wrong"),
        refused({"result": False, "code": 1640001, "message": "Parameters error"}, status=400),
        esb(1101046, "association kind does not exist"),
        esb(1199006, "'bk_obj_id' data parameter verification does not pass"),
        esb(1199006, "'bk_asst_obj_id' 数据参数校验不通过"),
        esb(1199011, "'bk_obj_asst_id' the parameter is invalid or does not exist"),
        esb(1199035, " details exceed the limit 200"),
    ],
)
def test_relation_level_refusals_carry_a_fix(answer: Answer) -> None:
    refusal = read_refusal(answer, DETAILS, SWITCH_HOST)
    assert refusal.scope is Scope.RELATION
    assert refusal.fix and not refusal.named


def test_unknown_model_association_says_so() -> None:
    answer = apigw(1199045, "model association [map[bk_obj_asst_id:nope]] not found")
    assert "bk_obj_asst_id" in read_refusal(answer, DETAILS, SWITCH_HOST).fix
    assert "username" not in answer.hint


@pytest.mark.parametrize(
    "answer",
    [
        esb(1199006, "Deserializing JSON data failed"),
        esb(1199006, "反序列化JSON数据失败"),
        esb(1199000, "Deserializing JSON data failed"),
        apigw(1199045, "get host module relation failed: context deadline exceeded"),
        esb(1199999, "'topo' Internal Server Error"),
        esb(1199999, "'topo' 服务器内部错误"),
        # Names an instance no detail has on a looked-up side: cannot be matched.
        apigw(1199045, "host 4242 has no relations"),
        # An invalid-id text although every id is valid: the parser saw something else.
        apigw(1199045, "invalid bk_inst_id value"),
    ],
)
def test_unattributable_parameter_refusals_are_bisected(answer: Answer) -> None:
    assert read_refusal(answer, DETAILS, SWITCH_HOST).scope is Scope.UNNAMED


@pytest.mark.parametrize(
    "answer",
    [
        esb(1306429, "Access frequency limit"),
        refused({"result": False, "code": 1650401, "message": "timeout"}, status=504),
        esb(1109005, "generate audit log failed"),
        esb(1113053, "association constraint mismatch"),
        esb(1101000, "something else"),
        Answer(Verdict.AMBIGUOUS, None, None, "TimeoutError"),
    ],
)
def test_other_refusals_fail_the_request_only(answer: Answer) -> None:
    assert read_refusal(answer, DETAILS, SWITCH_HOST).scope is Scope.REQUEST


def test_ok_is_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="refused"):
        read_refusal(Answer(Verdict.OK, 200), DETAILS)


def test_invalid_ids_are_held_until_a_resync() -> None:
    assert IndexKind.INVALID_ID.held_until_resync and IndexKind.CONFLICT_1_1.held_until_resync
    assert not IndexKind.MISSING_TARGET.held_until_resync
    assert pair_next_attempt(IndexKind.INVALID_ID, 1, 100.0, 60.0, 3600.0) is None
    assert pair_next_attempt(IndexKind.MISSING_TARGET, 1, 100.0, 60.0, 3600.0) == 160.0
