"""Totality and equivalence properties of the pure core."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.answer import Answer, Verdict, classify_response
from syncd.core.pairs import MAX_ID, pack, pack_raw
from syncd.engine.desired import BadValue, to_id

raw = st.one_of(
    st.integers(-5, MAX_ID + 5),
    st.integers(MAX_ID - 3, MAX_ID + 3).map(str),
    st.text(alphabet="0123456789 -+_abc", max_size=6),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, max_value=1e6, min_value=-1e6),
)


def checked(values: list[object]) -> list[int] | None:
    try:
        return [to_id(v) for v in values]  # type: ignore[arg-type]
    except BadValue:
        return None


@given(st.lists(st.tuples(raw, raw), min_size=1, max_size=20))
def test_pack_raw_is_to_id(chunk: list[tuple[object, object]]) -> None:
    """The C-speed path accepts a chunk only if every value passes to_id, with equal keys."""
    fast = pack_raw([s for s, _ in chunk], [d for _, d in chunk])
    sources, targets = checked([s for s, _ in chunk]), checked([d for _, d in chunk])
    if fast is not None:
        assert sources is not None and targets is not None
        assert list(fast) == [pack(s, d) for s, d in zip(sources, targets, strict=True)]


@given(
    st.integers(100, 599),
    st.dictionaries(st.sampled_from(["Retry-After", "X-Request-ID", "X"]), st.text(max_size=8)),
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["result", "code", "message", "data", "bk_error_code"]), inner
                )
            ),
            max_leaves=10,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
)
def test_classify_response_is_total(status: int, headers: dict[str, str], body: bytes) -> None:
    """Any status, headers and bytes give an Answer with a verdict, never an exception."""
    answer = classify_response(status, headers, body)
    assert isinstance(answer, Answer) and isinstance(answer.verdict, Verdict)
    assert isinstance(answer.error, str)
    if answer.verdict is Verdict.OK:
        assert status == 200
