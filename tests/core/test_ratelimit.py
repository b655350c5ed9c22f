"""Send budgets on virtual time: even spacing, a small burst, AIMD on 429s, budgets per gateway.

Every test drives the limiter with an injected clock whose ``sleep`` advances it,
so the figures are exact and nothing waits in real time.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from syncd.cmdb.ratelimit import (
    AdaptiveRateLimiter,
    Gcra,
    RateBudgets,
    default_burst,
)


class VirtualTime:
    """A clock that only moves when someone sleeps; ``late`` oversleeps every wake-up."""

    def __init__(self, late: float = 0.0) -> None:
        self.now = 1000.0
        self.late = late
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.late
        await asyncio.sleep(0)


def limiter(rate: float, vt: VirtualTime, **kw: float | int) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(rate, clock=vt.clock, sleep=vt.sleep, **kw)  # type: ignore[arg-type]


async def send_stamps(
    lim: AdaptiveRateLimiter, vt: VirtualTime, workers: int, each: int
) -> list[float]:
    stamps: list[float] = []

    async def worker() -> None:
        for _ in range(each):
            await lim.acquire()
            stamps.append(vt.now)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(stamps)


def peak_in_one_second(stamps: list[float]) -> int:
    """Most sends in any half-open one-second window, as the simulator counts arrivals.

    Exact spacing puts a send on the window's edge, where float rounding of the summed
    intervals would decide the side: a nanosecond of slack keeps it outside.
    """
    peak, lo = 0, 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - 1.0 + 1e-9:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


async def test_sends_leave_one_interval_apart_at_exactly_the_rate() -> None:
    vt = VirtualTime()
    lim = limiter(100, vt, burst=1)
    stamps = await send_stamps(lim, vt, workers=32, each=10)  # 320 sends, 32 waiting at once
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) == pytest.approx(0.01) and max(gaps) == pytest.approx(0.01)
    assert peak_in_one_second(stamps) == 100
    # Throughput at the limit: 320 sends take 319 intervals, not a second more.
    assert stamps[-1] - stamps[0] == pytest.approx(3.19)
    assert lim.sent == 320 and lim.waited > 0


async def test_default_burst_is_small_and_the_peak_stays_within_ten_percent() -> None:
    assert default_burst(100) == 2 and default_burst(40) == 1 and default_burst(1000) == 20
    for rate in (10, 40, 100, 1000):
        vt = VirtualTime()
        lim = limiter(rate, vt)
        stamps = await send_stamps(lim, vt, workers=32, each=int(rate * 3) // 32 + 1)
        peak = peak_in_one_second(stamps)
        assert peak == rate + lim.burst - 1  # the burst once, then one per interval
        assert peak <= 1.1 * rate or rate < 10


async def test_a_late_wakeup_is_made_up_within_the_burst_tolerance() -> None:
    # Every wake-up 4 ms late at 100/s: a burst of 2 (10 ms of tolerance) keeps the pace,
    # a burst of 1 loses the 4 ms on every send.
    tolerant, strict = VirtualTime(late=0.004), VirtualTime(late=0.004)
    fast = await send_stamps(limiter(100, tolerant, burst=2), tolerant, workers=8, each=50)
    slow = await send_stamps(limiter(100, strict, burst=1), strict, workers=8, each=50)
    assert fast[-1] - fast[0] < 4.0 + 0.01  # 400 sends in 399 intervals (plus one lateness)
    assert slow[-1] - slow[0] == pytest.approx(399 * 0.014)
    assert peak_in_one_second(fast) <= 101


async def test_after_idle_only_the_burst_leaves_at_once() -> None:
    """A one-second log of sends would let ``rate`` leave at once; the GCRA lets ``burst``."""
    vt = VirtualTime()
    lim = limiter(100, vt)
    await lim.acquire()
    assert lim.delay() == 0  # a burst of two ...
    await lim.acquire()
    assert lim.delay() == pytest.approx(0.01)  # ... then strictly one per interval


def test_gcra_arithmetic() -> None:
    g = Gcra(10, burst=3)
    assert g.interval == pytest.approx(0.1) and g.tolerance == pytest.approx(0.2)
    for _ in range(3):
        assert g.delay(0.0) == 0
        g.take(0.0)
    assert g.delay(0.0) == pytest.approx(0.1)
    assert g.delay(5.0) == 0  # idle: the burst is back, never more
    g.take(5.0)
    g.take(5.0)
    g.take(5.0)
    assert g.delay(5.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        g.set_rate(0)


async def test_a_refusal_halves_pauses_and_the_rate_climbs_back_a_step_a_second() -> None:
    vt = VirtualTime()
    lim = limiter(40, vt, burst=1)
    await lim.acquire()
    lim.throttled(0.5)
    assert lim.rate == 20 and lim.decreases == 1
    assert lim.delay() == pytest.approx(0.5)
    lim.throttled(0.5)  # within the same second: no second halving
    assert lim.rate == 20 and lim.decreases == 1
    before = vt.now
    await lim.acquire()  # waits out the pause ...
    await lim.acquire()  # ... then one interval at the halved rate
    assert vt.now - before == pytest.approx(0.5 + 1 / 20)
    vt.now += 1.5  # a quiet second later ...
    lim.succeeded()
    assert lim.rate == 22  # ... one step (5% of the configured rate, at least 1) back
    for _ in range(100):
        vt.now += 1.5
        lim.succeeded()
    assert lim.rate == 40  # never above the configured rate


async def test_a_pause_ordered_while_senders_wait_applies_to_the_next_send() -> None:
    vt = VirtualTime()
    lim = limiter(100, vt, burst=1)
    stamps: list[float] = []

    async def worker(n: int) -> None:
        for _i in range(n):
            await lim.acquire()
            stamps.append(vt.now)
            if len(stamps) == 10:
                lim.throttled(2.0)  # the 10th answer was a 429 with reset 2 s

    await asyncio.gather(*(worker(10) for _ in range(4)))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[9] >= 2.0  # nobody left during the pause
    assert min(gaps[10:]) == pytest.approx(1 / 50)  # afterwards, half the rate


def test_floor_and_the_reset_cap() -> None:
    vt = VirtualTime()
    lim = limiter(2, vt)
    for _ in range(5):
        vt.now += 2
        lim.throttled(None)
    assert lim.rate == 1.0  # the floor
    lim.throttled(3600)
    assert lim.delay() == pytest.approx(60.0)  # one refusal never stalls more than a minute


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    lim = AdaptiveRateLimiter(1, burst=1)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lim.sent == 1


def test_budgets_are_shared_on_the_esb_and_apart_on_the_api_gateway() -> None:
    esb = RateBudgets.for_gateway("esb", 50, read_rate=500)
    assert esb.shared and esb.read.rate == 50  # read_rate means nothing on the ESB
    assert esb.for_api("search_instance_associations") is esb.for_api(
        "batch_create_instance_association"
    )
    gw = RateBudgets.for_gateway("apigw", 50, read_rate=200)
    assert not gw.shared and gw.write.rate == 50 and gw.read.rate == 200
    for write in ("batch_create_instance_association", "delete_related_inst_asso"):
        assert gw.for_api(write) is gw.write
    for read in (
        "search_instance_associations",
        "count_instance_associations",
        "find_object_association",
        "search_object_instances",
        "list_hosts_without_biz",
        "resource_watch",
    ):
        assert gw.for_api(read) is gw.read
    assert RateBudgets.for_gateway("apigw", 30).read.rate == 30  # default: rate_limit
    gw.read.throttled(1.0)  # a 429 on a read slows reads only
    assert gw.read.rate == 100 and gw.write.rate == 50
