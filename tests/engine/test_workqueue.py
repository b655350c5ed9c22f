"""The work queue alone (syncd.engine.workqueue): no I/O, a handler that records its runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from syncd.engine.workqueue import Work, WorkQueue


class Recorder:
    """A handler that records each run and holds it until released."""

    def __init__(self) -> None:
        self.runs: list[Work] = []
        self.active: set[str] = set()
        self.overlaps = 0
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    async def __call__(self, work: Work) -> str:
        if work.key in self.active:
            self.overlaps += 1
        self.active.add(work.key)
        self.runs.append(work)
        try:
            await self.gate(work.key).wait()
            if work.key == "boom":
                raise ValueError("boom")
            return f"{work.key}#{len(self.runs)}"
        finally:
            self.active.discard(work.key)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_key_runs_at_once_and_its_future_has_the_result() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    run = queue.add(Work("a"))
    await _settle()
    assert rec.runs == [Work("a")] and queue.busy("a")
    rec.gate("a").set()
    assert await run == "a#1"
    assert not queue.busy("a")


async def test_requests_while_running_merge_into_one_more_run_with_the_resync_flag() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    first = queue.add(Work("a"))
    await _settle()
    second = queue.add(Work("a"))
    third = queue.add(Work("a", resync=True))
    fourth = queue.add(Work("a"))
    assert second is third is fourth
    assert len(rec.runs) == 1, "a running key never starts twice"
    rec.gate("a").set()
    assert await first == "a#1"
    assert await second == "a#2"
    assert rec.runs == [Work("a"), Work("a", resync=True)]
    assert rec.overlaps == 0 and queue.runs == 2


async def test_a_resync_request_first_and_a_plain_one_after_still_resync() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    queue.add(Work("a"))
    await _settle()
    queue.add(Work("a", resync=True))
    queue.add(Work("a"))
    rec.gate("a").set()
    await _settle()
    await _settle()
    assert rec.runs[-1] == Work("a", resync=True)


async def test_different_keys_run_side_by_side() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    runs = [queue.add(Work(k)) for k in "abc"]
    await _settle()
    assert rec.active == {"a", "b", "c"}
    for k in "abc":
        rec.gate(k).set()
    assert await asyncio.gather(*runs) == ["a#3", "b#3", "c#3"]


async def test_many_requests_from_many_callers_never_overlap_one_key() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)

    async def caller(i: int) -> str:
        await asyncio.sleep(0.001 * (i % 3))
        return await queue.add(Work("a", resync=i % 7 == 0))

    rec.gate("a").set()
    results = await asyncio.gather(*(caller(i) for i in range(50)))
    assert rec.overlaps == 0
    assert len(results) == 50 and queue.runs < 50  # requests merged
    assert not queue.busy("a")


async def test_a_failing_run_gives_its_waiters_the_error_and_the_key_runs_again() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    first = queue.add(Work("boom"))
    await _settle()
    second = queue.add(Work("boom"))
    rec.gate("boom").set()
    with pytest.raises(ValueError, match="boom"):
        await first
    with pytest.raises(ValueError, match="boom"):
        await second
    assert queue.runs == 2 and not queue.busy("boom")


async def test_an_ignored_future_of_a_failed_run_does_not_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    queue.add(Work("boom"))
    rec.gate("boom").set()
    await _settle()
    await _settle()
    assert not queue.busy("boom")
    assert "exception was never retrieved" not in caplog.text


async def test_cancel_abandons_the_running_run_and_drops_the_waiting_one() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    first = queue.add(Work("a"))
    await _settle()
    second = queue.add(Work("a"))
    queue.cancel(["a"])
    await _settle()
    assert first.cancelled() and second.cancelled()
    assert not queue.busy("a") and queue.runs == 1


async def test_aclose_ends_every_run() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    runs = [queue.add(Work(k)) for k in "ab"]
    queue.add(Work("a", resync=True))
    await _settle()
    await queue.aclose()
    assert all(r.cancelled() for r in runs)
    assert not queue.busy("a") and not queue.busy("b")


@dataclass(frozen=True)
class Changes(Work):
    """A richer request, as an incremental push would send: the changes merge too."""

    changed: frozenset[int] = frozenset()

    def merged(self, later: Work) -> Work:
        more = later.changed if isinstance(later, Changes) else frozenset()
        return Changes(self.key, resync=self.resync or later.resync, changed=self.changed | more)


async def test_a_richer_request_merges_its_own_way() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    queue.add(Work("a"))
    await _settle()
    queue.add(Changes("a", changed=frozenset({1})))
    last = queue.add(Changes("a", changed=frozenset({2})))
    rec.gate("a").set()
    await last
    assert rec.runs[-1] == Changes("a", changed=frozenset({1, 2}))


@dataclass(frozen=True)
class Apart(Work):
    """A request that merges with nothing (as a pushed change that waits for its report)."""

    n: int = 0

    def merged(self, later: Work) -> Work | None:
        return None


async def test_requests_that_do_not_merge_wait_in_order_one_at_a_time() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    queue.add(Work("a"))
    await _settle()
    plain = queue.add(Work("a"))
    first = queue.add(Apart("a", n=1))
    second = queue.add(Apart("a", n=2))
    again = queue.add(Work("a", resync=True))
    assert len({id(f) for f in (plain, first, second, again)}) == 4
    rec.gate("a").set()
    await asyncio.gather(plain, first, second, again)
    assert rec.runs == [Work("a"), Work("a"), Apart("a", n=1), Apart("a", n=2), Work("a", True)]


async def test_the_lift_guards_flag_merges_like_the_resync_flag() -> None:
    rec = Recorder()
    queue: WorkQueue[str] = WorkQueue(rec)
    queue.add(Work("a"))
    await _settle()
    queue.add(Work("a", lift_guards=True))
    last = queue.add(Work("a", resync=True))
    rec.gate("a").set()
    await last
    assert rec.runs[-1] == Work("a", resync=True, lift_guards=True)
    assert rec.overlaps == 0
