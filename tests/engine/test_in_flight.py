"""Creates in flight, kept one entry a request: the watch asks which pairs syncd is creating
right now (their events come before the answer and are not drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from syncd.core.answer import Answer, Verdict
from syncd.core.outcome import classify_batch
from syncd.core.pairs import pack
from syncd.engine import known as known_module
from syncd.engine.known import Known
from syncd.state import StateStore

R = "switch-host"
FIRST = [(1, 10), (1, 11), (1, 12)]
SECOND = [(2, 20), (2, 21)]


@pytest.fixture
def known(tmp_path: Path) -> Known:
    store, _ = StateStore.open(tmp_path / "state.db")
    k = Known(cast(Any, None), store, clock=lambda: 1000.0)  # no CMDB read here
    k._pairs[R] = set()  # the mirror, as a resync leaves it
    return k


def keys(details: list[tuple[int, int]]) -> list[int]:
    return [pack(s, d) for s, d in details]


def created(details: list[tuple[int, int]], first_id: int) -> Answer:
    ids = {str(i): first_id + i for i in range(len(details))}
    return Answer(Verdict.OK, 200, 0, "", {"success_created": ids, "error_msg": None})


def test_a_sent_request_is_in_flight_until_its_answer_is_recorded(known: Known) -> None:
    first = known.intend(R, FIRST)
    second = known.intend(R, SECOND, keys(SECOND))
    ask = [*keys(FIRST), *keys(SECOND), pack(9, 99)]
    assert known.sending(R, ask) == set(keys(FIRST)) | set(keys(SECOND))
    outcome = classify_batch(FIRST, created(FIRST, 500))
    known.record(R, outcome, [], first, keys(FIRST))
    assert known.sending(R, ask) == set(keys(SECOND))
    assert known.pairs(R) == set(keys(FIRST))  # created whole: the batch's keys
    known.record(R, classify_batch(SECOND, created(SECOND, 600)), [], second)
    assert known.sending(R, ask) == set()
    assert known.pairs(R) == set(keys(FIRST)) | set(keys(SECOND))


def test_a_partly_created_batch_mirrors_only_what_the_cmdb_holds(known: Known) -> None:
    attempt = known.intend(R, FIRST, keys(FIRST))
    answer = Answer(
        Verdict.OK,
        200,
        0,
        "",
        {"success_created": {"0": 500}, "error_msg": {"1": "already exist", "2": "no such host"}},
    )
    outcome = classify_batch(FIRST, answer)
    known.record(R, outcome, [], attempt, keys(FIRST))
    assert known.pairs(R) == {pack(*FIRST[0])} | {pack(s, d) for s, d, _ in outcome.exists}
    assert pack(*FIRST[2]) not in known.pairs(R)
    assert known.sending(R, keys(FIRST)) == set()  # answered: none of it is in flight


def test_a_request_never_answered_stops_counting_after_the_longest_wait(
    known: Known, monkeypatch: pytest.MonkeyPatch
) -> None:
    known.intend(R, FIRST)  # cancelled at shutdown: no answer is ever recorded
    assert known.sending(R, keys(FIRST)) == set(keys(FIRST))
    now = known_module.time.monotonic()
    monkeypatch.setattr(
        known_module.time, "monotonic", lambda: now + known_module.SENDING_MAX_AGE + 1
    )
    assert known.sending(R, keys(FIRST)) == set()
