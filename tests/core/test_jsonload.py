"""jsonload.loads: orjson's speed where it gives exactly json.loads' result."""

from __future__ import annotations

import json

import pytest

from syncd.core.jsonload import loads

BODIES = [
    b'{"result": true, "code": 0, "data": {"success_created": {"0": 17, "1": 18}}}',
    b'{"a": 1, "a": 2}',
    b'{"a": -0, "b": -0.0, "c": 1.5e3, "d": [true, false, null]}',
    b'{"id": 9223372036854775807, "neg": -9223372036854775808}',
    b'{"id": 18446744073709551616}',  # orjson alone: a float
    b'{"id": -9223372036854775809}',
    b'{"id": 123456789012345678901234567890}',
    b'{"a": NaN, "b": Infinity}',
    b'{"a": 1e400}',
    b'{"a": "\\ud800"}',
    b'\xef\xbb\xbf{"a": 1}',
    '{"a": "\u00e9"}'.encode("utf-16"),
    '{"msg": "\u5173\u8054"}'.encode(),
]


@pytest.mark.parametrize("body", BODIES)
def test_same_as_json(body: bytes) -> None:
    want = json.loads(body)
    got = loads(body)
    assert repr(got) == repr(want)  # repr: 2**64 == float(2**64), an int is not a float


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"a": 1}x', json.JSONDecodeError),
        (b'{"a": "\xff"}', UnicodeDecodeError),
        (b"[" * 100_000 + b"]" * 100_000, RecursionError),
        (b"", json.JSONDecodeError),
    ],
)
def test_same_errors_as_json(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        json.loads(body)
    with pytest.raises(error):
        loads(body)
