"""jsonload.loads: orjson's speed where it gives exactly json.loads' result."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.jsonload import has_long_number as _has_long_number
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


NUMBERS = st.integers(min_value=-(2**70), max_value=2**70)


@given(st.recursive(NUMBERS | st.booleans() | st.none(), lambda kids: st.lists(kids, max_size=6)))
def test_any_integer_reads_as_json_reads_it(doc: object) -> None:
    """Integers of every width around the int64/uint64 edges: never a float by orjson."""
    body = json.dumps({"data": doc}).encode()
    assert repr(loads(body)) == repr(json.loads(body))


@given(st.binary(max_size=80).map(lambda b: b.translate(bytes.maketrans(b"\x00\x01", b"99"))))
def test_a_run_of_19_digits_is_seen_wherever_it_is(noise: bytes) -> None:
    """The long-number check agrees with ``[0-9]{19}`` on digit-dense bytes."""
    for body in (noise, noise + b"1" * 19, b"9" * 18 + b"," + noise):
        long_run = re.search(rb"[0-9]{19}", body) is not None
        assert long_run == _has_long_number(body)
