"""pack_columns: keys of two digit-text columns, converting repeated texts once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.pairs import MAX_ID, pack, pack_columns

# Few distinct texts (so columns repeat, as a switch does on every cable of its ports),
# with leading zeros, values at and over MAX_ID, and a text too long for int().
_TEXTS = st.sampled_from(
    ["0", "7", "007", "42", "100001", str(MAX_ID), str(MAX_ID + 1), "9" * 5000]
) | st.integers(0, MAX_ID).map(str)


def _reference(src: list[str], dst: list[str]) -> list[int] | None:
    try:
        pairs = [(int(s), int(d)) for s, d in zip(src, dst, strict=True)]
    except ValueError:
        return None
    if any(s > MAX_ID or d > MAX_ID for s, d in pairs):
        return None
    return [pack(s, d) for s, d in pairs]


@given(st.lists(st.tuples(_TEXTS, _TEXTS), max_size=60))
def test_equals_one_int_per_value(rows: list[tuple[str, str]]) -> None:
    src, dst = [r[0] for r in rows], [r[1] for r in rows]
    assert pack_columns(src, dst) == _reference(src, dst)


def test_repeated_and_distinct_columns() -> None:
    src = ["5"] * 50 + ["6"] * 50  # repeats: converted once each
    dst = [str(100_000 + n) for n in range(100)]  # distinct: converted in turn
    assert pack_columns(src, dst) == [pack(int(s), int(d)) for s, d in zip(src, dst, strict=True)]
    assert pack_columns(src, [str(MAX_ID + 1)] * 100) is None
    assert pack_columns([str(MAX_ID + 1)] * 100, dst) is None
    assert pack_columns([], []) == []
