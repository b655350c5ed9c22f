"""syncd.runtime.changefeed: bursts applied in bounded groups as they come; failures retried
until a full read covers them; readiness while they wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from syncd.engine.change import Change
from syncd.engine.report import CycleReport, RelationReport
from syncd.runtime.changefeed import ChangeFeed, take
from syncd.runtime.health import Health


def cables(*ids: int) -> Change:
    return Change(cables=frozenset(ids))


class Recorder:
    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.groups: list[tuple[str, Change, float]] = []
        self.cycles: list[tuple[str, list[str], float]] = []
        self.delay = delay
        self.fail = fail
        self.changed = asyncio.Event()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait (bounded) until ``done()``, woken by each apply or cycle request."""
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def apply(self, name: str, change: Change) -> bool:
        self.groups.append((name, change, asyncio.get_running_loop().time()))
        self.changed.set()
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            return False
        return True

    def request(self, reason: str, relations: Collection[str]) -> None:
        self.cycles.append((reason, list(relations), asyncio.get_running_loop().time()))
        self.changed.set()


def test_take_bounds_a_group() -> None:
    change = Change(frozenset(range(5)), frozenset({100, 101}))
    head, rest = take(change, 6)
    assert head == Change(frozenset(range(5)), frozenset({100}))
    assert rest == Change(frozenset(), frozenset({101}))


async def test_a_burst_is_applied_in_bounded_groups_as_it_comes() -> None:
    rec = Recorder(delay=0.05)  # each group takes a while: deliveries pile up meanwhile
    feed = ChangeFeed(["dc"], rec.apply, rec.request, gather=0.01, group_max=8)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for cable in range(1, 51):  # 50 cable creations, one every 10 ms (a 0.5 s burst)
        assert feed.push(cables(cable), "dcim.cable created") == "applied"
        await asyncio.sleep(0.01)
    await rec.until(lambda: sum(g[1].size for g in rec.groups) >= 50)
    stop.set()
    await task
    applied = [c for _, group, _ in rec.groups for c in group.cables]
    assert sorted(applied) == list(range(1, 51))  # every one, once
    assert all(group.size <= 8 for _, group, _ in rec.groups)
    # The first group went out long before the burst ended (no waiting for quiet).
    assert rec.groups[0][2] - started < 0.25 and len(rec.groups) > 3
    assert rec.cycles == []


async def test_a_failed_apply_wants_a_full_read_retried_with_backoff_until_covered() -> None:
    rec = Recorder(fail=1)
    feed = ChangeFeed(["dc"], rec.apply, rec.request, gather=0, retry_base=0.05, retry_cap=0.2)
    health = Health(max_age=60)
    health.cycle_finished(True, {})
    health.push = feed.not_ready
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    feed.push(cables(7), "dcim.cable created")
    await rec.until(lambda: bool(rec.cycles))
    assert rec.cycles[0][1] == ["dc"]
    ok, reason = health.ready()
    assert not ok and "wait for a full read" in reason
    # The asked-for cycle fails (NetBox still down): asked again after retry_base, then 2x.
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        started = loop.time()
        feed.cycle_finished({"dc": False}, loop.time())
        await rec.until(lambda n=attempt + 1: len(rec.cycles) >= n)
        waited = rec.cycles[-1][2] - started
        assert waited >= 0.05 * 2 ** (attempt - 1) * 0.9
    # A cycle that began before the last change does not cover it; one after does.
    feed.cycle_finished({"dc": True}, loop.time() - 100)
    assert "dc" in feed.wanted
    feed.cycle_finished({"dc": True}, loop.time())
    assert feed.wanted == {} and health.ready()[0]
    # Changes while a full read is wanted are left to it (a full read after them covers them).
    stop.set()
    await task
    feed.close()


async def test_changes_while_a_full_read_is_wanted_ask_for_it_again() -> None:
    rec = Recorder()
    feed = ChangeFeed(["dc"], rec.apply, rec.request, gather=0)
    feed.want_full("dc", "a site changed")
    since = feed.wanted["dc"].since
    await asyncio.sleep(0.01)
    assert feed.push(cables(3), "dcim.cable created") == "applied"
    assert feed.pending == {} and feed.wanted["dc"].since > since
    assert len(rec.cycles) == 2


async def test_an_empty_change_is_ignored_and_none_is_a_full_read() -> None:
    rec = Recorder()
    feed = ChangeFeed(["a", "b"], rec.apply, rec.request)
    assert feed.push(Change(), "dcim.interface created") == "ignored"
    assert feed.push(None, "dcim.site updated") == "full_read"
    assert [c[1] for c in rec.cycles] == [["a"], ["b"]]


async def test_push_sources_report_cycles_to_the_feed() -> None:
    rec = Recorder()
    feed = ChangeFeed(["dc"], rec.apply, rec.request)
    feed.want_full("dc", "x")
    report = CycleReport([RelationReport("dc")], 0.1)
    feed.cycle_finished({r.relation: r.error is None for r in report.relations}, feed.clock())
    assert feed.not_ready() is None
