"""jsondump.dumps: json.dumps' exact bytes, the details array by orjson where that is exact."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.jsondump import _int_details, dumps

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
HEAD = {"bk_app_code": "syncd", "bk_username": "admin", "bk_obj_asst_id": "sw_\u5173\u8054"}


class Level(enum.IntEnum):
    ONE = 1


def _pairs(pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    return [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in pairs]


def test_a_batch_of_int_pairs_takes_the_fast_path_with_the_same_bytes() -> None:
    details = _pairs([(1, 100001), (2**63 - 1, 0), (-5, 7)])
    assert _int_details(details) is not None
    payload = {**HEAD, "details": details}
    assert dumps(payload) == json.dumps(payload).encode()


@pytest.mark.parametrize(
    "details",
    [
        _pairs([(1, "2")]),  # a string value
        _pairs([(1, 2.0)]),  # a float
        _pairs([(1, True)]),  # a bool
        _pairs([(1, None)]),  # null
        _pairs([(2**64, 1)]),  # beyond 64 bits: orjson refuses
        _pairs([(1, float("nan"))]),  # json writes NaN, orjson null
        [{"bk_inst_id": 1, "other": 2}],  # another key
        [{"a,b": 1}],  # a key with a comma
        [{"bk_inst_id": 1, "x:": 2}],  # a key with a colon
        [{1: 2}],  # a non-str key
        [["bk_inst_id", 1]],  # a key's text as a value
        [{"bk_inst_id": ['bk_inst_id":']}],
    ],
)
def test_anything_but_int_pairs_goes_to_json_dumps_whole(details: list[Any]) -> None:
    assert _int_details(details) is None
    payload = {**HEAD, "details": details}
    assert dumps(payload) == json.dumps(payload).encode()


@pytest.mark.parametrize(
    "payload",
    [
        {"details": _pairs([(1, 2)])},  # nothing before the details
        {"details": _pairs([(1, 2)]), "after": 1},  # not the last key
        {**HEAD, "details": []},
        {**HEAD, "details": "not a list"},
        {**HEAD, "details": _pairs([(Level.ONE, 2)])},  # an IntEnum renders as its int
        {"condition": {"bk_obj_asst_id": "x"}},
        {},
    ],
)
def test_other_shapes_give_json_dumps_bytes(payload: dict[str, Any]) -> None:
    assert dumps(payload) == json.dumps(payload).encode()


@given(st.lists(st.tuples(INT64, INT64), max_size=200), st.dictionaries(st.text(), st.text()))
def test_same_bytes_as_json_dumps(pairs: list[tuple[int, int]], head: dict[str, str]) -> None:
    head.pop("details", None)
    payload: dict[str, Any] = {**head, "details": _pairs(pairs)}
    assert dumps(payload) == json.dumps(payload).encode()


@given(
    st.recursive(
        st.none() | st.booleans() | INT64 | st.floats() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["bk_inst_id", "bk_asst_inst_id", "x"]), inner)
        ),
        max_leaves=12,
    )
)
def test_any_details_value_gives_json_dumps_bytes(details: Any) -> None:
    payload = {"bk_obj_id": "host", "details": details}
    assert dumps(payload) == json.dumps(payload).encode()
