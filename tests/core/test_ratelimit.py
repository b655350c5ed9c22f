"""The shared rate limiter: no one-second window over the limit; AIMD on 429s."""

from __future__ import annotations

import asyncio
import time

from syncd.cmdb.ratelimit import AdaptiveRateLimiter


async def test_no_window_holds_more_than_the_rate() -> None:
    limiter = AdaptiveRateLimiter(100)
    stamps: list[float] = []

    async def worker() -> None:
        for _ in range(15):
            await limiter.acquire()
            stamps.append(time.monotonic())

    await asyncio.gather(*(worker() for _ in range(10)))  # 150 sends, 10 at once
    stamps.sort()
    for i, start in enumerate(stamps):
        in_window = sum(1 for t in stamps[i:] if t - start < 1.0)
        assert in_window <= 100
    assert limiter.waited > 0


def test_throttled_halves_pauses_and_recovers_gradually() -> None:
    limiter = AdaptiveRateLimiter(40)
    limiter.throttled(0.5)
    assert limiter.rate == 20 and limiter.decreases == 1
    assert limiter._paused_until > time.monotonic()
    limiter.throttled(0.5)  # within the same second: no second halving
    assert limiter.rate == 20
    limiter._last_change -= 1.5  # a quiet second later ...
    limiter.succeeded()
    assert limiter.rate == 22  # ... one step (5% of the configured rate, at least 1) back
    limiter._last_change -= 100
    for _ in range(100):
        limiter._last_change -= 1.5
        limiter.succeeded()
    assert limiter.rate == 40  # never above the configured rate


def test_floor_and_slow_rates() -> None:
    limiter = AdaptiveRateLimiter(2)
    for _ in range(5):
        limiter._last_change -= 2
        limiter.throttled(None)
    assert limiter.rate == 1.0  # the floor
    assert AdaptiveRateLimiter._period(0.5) > 2.0  # one send per two seconds, plus margin
    assert AdaptiveRateLimiter._period(10) == 1.1  # one send interval of margin at low rates
    assert AdaptiveRateLimiter._period(100) == 1.02
