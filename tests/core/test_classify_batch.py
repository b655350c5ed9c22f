"""classify_batch over any answer: every detail lands in exactly one row, with one line."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.answer import Answer, Verdict
from syncd.core.details import IndexKind
from syncd.core.outcome import classify_batch

details_st = st.lists(
    st.tuples(st.integers(0, 50), st.integers(1000, 1050)), min_size=1, max_size=30, unique=True
)
messages = st.sampled_from(
    ["关联实例不存在", "被关联实例不存在", "already exist", "1:1", "1:n", "anything", ""]
)
ids = st.one_of(st.integers(1, 10**6), st.text(max_size=4), st.booleans(), st.none())


@st.composite
def answers(draw: st.DrawFn, size: int) -> Answer:
    verdict = draw(st.sampled_from(list(Verdict)))
    keys = st.integers(-1, size + 1).map(str)
    data: Any = draw(
        st.one_of(
            st.fixed_dictionaries(
                {
                    "success_created": st.dictionaries(keys, ids, max_size=size + 2),
                    "error_msg": st.dictionaries(keys, messages, max_size=size + 2),
                }
            ),
            st.none(),
            st.lists(st.integers(), max_size=3),
            st.fixed_dictionaries({"success_created": st.lists(st.integers(), max_size=2)}),
        )
    )
    return Answer(verdict, 200, 0, draw(st.text(max_size=10)), data, "req-1", None, None, "fix")


@given(st.data())
def test_every_index_exactly_once(data: st.DataObject) -> None:
    details = data.draw(details_st)
    answer = data.draw(answers(len(details)))
    out = classify_batch(details, answer, verbose=True)
    rows = [
        *((s, d) for s, d, _ in out.created),
        *((s, d) for s, d, _ in out.exists),
        *((f.src, f.dst) for f in out.failed),
    ]
    assert Counter(rows) == Counter(details)
    assert sorted(line["index"] for _, line in out.lines) == list(range(len(details)))
    assert all(line["operation"] == "create" for _, line in out.lines)
    for _, line in out.lines:
        assert details[line["index"]] == (line["bk_inst_id"], line["bk_asst_inst_id"])
    if answer.verdict is not Verdict.OK:
        assert not out.created and not out.exists
        assert all(f.kind is None and f.reason == "request" for f in out.failed)
    assert (out.refusal is not None) == (answer.verdict is Verdict.RELATION)


@given(details_st)
def test_all_created_is_the_fast_path(details: list[tuple[int, int]]) -> None:
    data = {"success_created": {str(i): 100 + i for i in range(len(details))}}
    out = classify_batch(details, Answer(Verdict.OK, 200, 0, "", data), verbose=False)
    assert out.created == [(s, d, 100 + i) for i, (s, d) in enumerate(details)]
    assert out.lines == [] and out.failed == [] and out.exists == []


def test_quiet_still_logs_failures() -> None:
    data = {"success_created": {"0": 7}, "error_msg": {"1": "关联实例不存在"}}
    out = classify_batch([(1, 2), (3, 4)], Answer(Verdict.OK, 200, 0, "", data), verbose=False)
    assert [(level, line["index"]) for level, line in out.lines] == [("warning", 1)]
    assert out.failed[0].kind is IndexKind.MISSING_SOURCE
