"""Send budgets on virtual time: even spacing, catch-up, AIMD on 429s, budgets per gateway.

Every test drives the limiter with an injected clock whose ``sleep`` advances it,
and the one-second window on that clock (``OneSecondCap``; production uses
asyncio-throttle's ``Throttler``, which polls real time), so the figures are exact
and nothing waits in real time.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from asyncio_throttle import Throttler

from syncd.cmdb.ratelimit import (
    WINDOW,
    AdaptiveRateLimiter,
    Gcra,
    OneSecondCap,
    RateBudgets,
    window_limit,
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


def limiter(rate: float, vt: VirtualTime, catch_up: float = 0.02) -> AdaptiveRateLimiter:
    window = OneSecondCap(clock=vt.clock, sleep=vt.sleep)
    return AdaptiveRateLimiter(
        rate, clock=vt.clock, sleep=vt.sleep, catch_up=catch_up, window=window
    )


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
    lim = limiter(100, vt, catch_up=0)
    stamps = await send_stamps(lim, vt, workers=32, each=10)  # 320 sends, 32 waiting at once
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # One interval apart; without catch-up the cap's 1 ms edge adds 1 ms once a second.
    assert min(gaps) == pytest.approx(0.01)
    assert sorted(gaps)[-4] == pytest.approx(0.01) and max(gaps) == pytest.approx(0.011)
    assert peak_in_one_second(stamps) == 100
    # Throughput at the limit: 320 sends take 319 intervals (and three edges).
    assert stamps[-1] - stamps[0] == pytest.approx(3.193)
    assert lim.sent == 320 and lim.waited > 0


@pytest.mark.parametrize("rate", [1, 10, 40, 100, 1000])
async def test_no_second_ever_holds_more_than_the_rate(rate: int) -> None:
    vt = VirtualTime()
    lim = limiter(rate, vt)
    assert lim.catch_up == pytest.approx(max(0.02, 1 / rate))  # one interval at least
    stamps = await send_stamps(lim, vt, workers=32, each=rate * 3 // 32 + 2)
    assert peak_in_one_second(stamps) == rate
    # ... and the rate is kept: n sends in (n - 1) / rate seconds (+0.1% for the edge).
    assert stamps[-1] - stamps[0] <= (len(stamps) - 1) / rate * 1.001 + 1e-6


async def test_late_wakeups_are_made_up_without_breaking_the_cap() -> None:
    # Every wake-up 4 ms late at 100/s: 20 ms of catch-up keeps the pace; without any,
    # the 4 ms are lost on every send.
    tolerant, strict = VirtualTime(late=0.004), VirtualTime(late=0.004)
    kept = await send_stamps(limiter(100, tolerant), tolerant, workers=8, each=50)
    lost = await send_stamps(limiter(100, strict, catch_up=0), strict, workers=8, each=50)
    assert kept[-1] - kept[0] < 3.99 + 0.02  # 400 sends in 399 intervals (plus lateness)
    assert lost[-1] - lost[0] == pytest.approx(399 * 0.014)
    assert peak_in_one_second(kept) <= 100


async def test_idling_buys_no_burst() -> None:
    """A bare one-second log lets ``rate`` sends leave at once after idling; this lets one."""
    vt = VirtualTime()
    lim = limiter(10, vt)  # catch-up of one whole interval at 10/s
    for _ in range(3):
        assert lim.delay() == 0
        await lim.acquire()
        assert lim.delay() == pytest.approx(0.1)  # the next waits a whole interval
        vt.now += 5.0  # idle


def test_one_second_cap() -> None:
    cap = OneSecondCap(window_limit(3))
    for t in (0.0, 0.1, 0.2):
        assert cap.delay(t) == 0
        cap.take(t)
    assert cap.delay(0.5) == pytest.approx(0.501)  # the 4th waits for the 1st to age out
    cap.rate_limit = window_limit(1.5)  # halved: ceil(1.5) = 2 in a second
    assert cap.delay(0.5) == pytest.approx(0.601)
    assert window_limit(0.2) == 1


async def test_one_second_cap_acquire_waits_on_the_injected_clock() -> None:
    vt = VirtualTime()
    cap = OneSecondCap(2, clock=vt.clock, sleep=vt.sleep)
    start = vt.now
    for _ in range(3):
        await cap.acquire()
    assert vt.now - start == pytest.approx(WINDOW) and vt.sleeps == 1


async def test_the_default_window_is_asyncio_throttle_and_follows_the_rate() -> None:
    vt = VirtualTime()  # drives the AIMD steps; the Throttler keeps to real time
    lim = AdaptiveRateLimiter(40.5, clock=vt.clock, sleep=vt.sleep)
    window = lim.window
    assert isinstance(window, Throttler)
    assert window.rate_limit == 41 and window.period == WINDOW  # ceil: 41 in some seconds
    assert window.retry_interval <= 0.001  # polls finely: no 10 ms jitter on a held send
    lim.throttled(None)  # a 429 halves the rate ...
    assert lim.rate == 20.25 and window.rate_limit == 21
    vt.now += 1.0
    lim.throttled(None)  # ... a second later, again
    assert lim.rate == 10.125 and window.rate_limit == 11
    vt.now += 2.0  # past the pause, a quiet second: a step back
    lim.succeeded()
    assert lim.rate == pytest.approx(12.15) and window.rate_limit == 13
    await lim.acquire()
    assert len(window._task_logs) == 1  # the send went through asyncio-throttle's log


def test_gcra_arithmetic() -> None:
    assert Gcra(10, catch_up=0.02).tolerance == pytest.approx(0.1)  # one interval at least
    assert Gcra(10).tolerance == 0
    g = Gcra(10, catch_up=0.25)
    assert g.interval == pytest.approx(0.1)
    g.take(0.0)  # afresh: no credit
    assert g.delay(0.0) == pytest.approx(0.1)
    g.take(0.2)  # the send due at 0.1 left at 0.2 ...
    assert g.delay(0.2) == 0  # ... so the one due at 0.2 may leave at once
    g.take(0.2)
    assert g.delay(0.2) == pytest.approx(0.1)  # back on the schedule: the next is due at 0.3
    g.take(1.0)  # later than the tolerance: lost, starts afresh
    assert g.delay(1.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        g.set_rate(0)


async def test_a_refusal_halves_pauses_and_the_rate_climbs_back_a_step_a_second() -> None:
    vt = VirtualTime()
    lim = limiter(40, vt, catch_up=0)
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
    lim = limiter(100, vt, catch_up=0)
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
    lim = AdaptiveRateLimiter(1, catch_up=0)
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
    assert isinstance(gw.read.window, Throttler) and gw.read.window is not gw.write.window
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
