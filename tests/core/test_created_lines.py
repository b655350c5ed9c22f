"""A batch that created every detail is kept as columns (CreatedLines) from the answer to
the log: the same rows, the same lines, byte for byte, as the per-detail path."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog

from syncd.core.answer import Answer, Verdict
from syncd.core.details import BadAnswer, all_created
from syncd.core.outcome import CreatedLines, classify_batch
from syncd.support import log
from tests.core.test_log import STAMP, stock

DETAILS = [(1, 1001), (2**62, 7), (3, 0)]


def answer(created: dict[str, object], errors: dict[str, str] | None = None) -> Answer:
    return Answer(Verdict.OK, 200, 0, "", {"success_created": created, "error_msg": errors})


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    log._fast = None


def test_an_all_created_answer_becomes_columns_with_the_same_rows() -> None:
    outcome = classify_batch(DETAILS, answer({"0": 11, "1": 12, "2": 13}))
    assert isinstance(outcome.lines, CreatedLines)
    assert outcome.created == [(1, 1001, 11), (2**62, 7, 12), (3, 0, 13)]
    assert outcome.exists == [] and outcome.failed == []
    assert list(outcome.lines) == [
        ("info", {"outcome": "created", "operation": "create", "index": i,
                  "bk_inst_id": s, "bk_asst_inst_id": d, "association_id": a})
        for i, ((s, d), a) in enumerate(zip(DETAILS, [11, 12, 13], strict=True))
    ]  # fmt: skip
    assert outcome.lines[-1] == outcome.lines[2] and outcome.lines[1:] == list(outcome.lines)[1:]
    quiet = classify_batch(DETAILS, answer({"0": 11, "1": 12, "2": 13}), verbose=False)
    assert list(quiet.lines) == [] and quiet.created == outcome.created


@pytest.mark.parametrize(
    "created",
    [
        {"2": 13, "0": 11, "1": 12},  # out of order: still every detail
    ],
)
def test_keys_in_any_order(created: dict[str, object]) -> None:
    assert all_created({"success_created": created}, 3) == [11, 12, 13]


@pytest.mark.parametrize(
    ("created", "errors"),
    [
        ({"0": 11, "1": 12}, None),  # one missing
        ({"0": 11, "1": 12, "2": 13}, {"1": "x"}),  # also an error
        ({"0": 11, "1": True, "2": 13}, None),  # a bool is not an id
        ({"0": 11, "1": "12", "2": 13}, None),  # a string id: the per-detail path reads it
        ({"0": 11, "1": 12, "3": 13}, None),  # a wrong index
    ],
)
def test_any_other_answer_takes_the_per_detail_path(
    created: dict[str, object], errors: dict[str, str] | None
) -> None:
    outcome = classify_batch(DETAILS, answer(created, errors))
    assert not isinstance(outcome.lines, CreatedLines)
    assert len(outcome.created) + len(outcome.exists) + len(outcome.failed) == 3


@pytest.mark.parametrize("ids", [[11, 11, 12], [0, 1, 2], [-5, 1, 2]])
def test_ids_no_cmdb_gives_fail_the_whole_request(ids: list[int]) -> None:
    with pytest.raises(BadAnswer):
        all_created({"success_created": {str(i): v for i, v in enumerate(ids)}}, 3)
    outcome = classify_batch(DETAILS, answer({str(i): v for i, v in enumerate(ids)}))
    assert outcome.created == [] and {f.reason for f in outcome.failed} == {"request"}


def render(rows: object, level: str = "info", bound: bool = True) -> str:
    out = io.StringIO()
    log.configure(level, "json", stream=out)
    if bound:
        with log.relation_context("switch-host", "bk_switch_connect_host", 7):
            log.log_pairs(rows, batch=3, request_id="r-1")  # type: ignore[arg-type]
    else:
        log.log_pairs(rows, batch=3, request_id=None)  # type: ignore[arg-type]
    return STAMP.sub("T", out.getvalue())


@pytest.mark.parametrize("bound", [True, False])
def test_columns_render_the_bytes_of_the_per_detail_lines(bound: bool) -> None:
    lines = CreatedLines(DETAILS, [11, 12, 13])
    columns = render(lines, bound=bound)
    assert columns == render(list(lines), bound=bound)
    assert len(columns.splitlines()) == 3
    reference = io.StringIO()
    stock(reference)
    with log.relation_context("switch-host", "bk_switch_connect_host", 7):
        log.log_pairs(list(lines), batch=3, request_id="r-1")
    if bound:
        assert columns == STAMP.sub("T", reference.getvalue())
    assert render(lines, level="warning") == ""


def test_a_bound_key_named_like_a_field_takes_the_per_line_path() -> None:
    lines = CreatedLines(DETAILS, [11, 12, 13])
    out = io.StringIO()
    log.configure("info", "json", stream=out)
    with structlog.contextvars.bound_contextvars(index="bound"):
        log.log_pairs(lines, batch=3)
    first = out.getvalue().splitlines()[0]
    assert '"index": 0' in first and '"bound"' not in first
