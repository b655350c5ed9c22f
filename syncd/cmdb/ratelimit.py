"""One request-rate budget for the whole client, that backs off when the gateway says 429.

asyncio-throttle keeps a sliding one-second log of sends, so no window of one
second ever holds more than ``rate`` sends. On a 429 the rate is halved and all
workers pause until the gateway's window resets; it then climbs back
additively, a step per quiet second (AIMD, as TCP does), so syncd settles just
under the real limit even when configured above it.
"""

from __future__ import annotations

import asyncio
import time

from asyncio_throttle.throttler import Throttler

# Margin on the window so that scheduling jitter (ours or the server's) can't
# squeeze rate+1 sends into a second observed at the server: at least 20 ms, and
# at low rates one whole send interval, where a single extra request is a breach.
_MIN_MARGIN = 0.02


class AdaptiveRateLimiter:
    """A shared send budget; ``acquire`` before every request attempt."""

    def __init__(self, rate: float, *, floor: float = 1.0) -> None:
        self.configured = rate
        self.floor = min(floor, rate)
        self._rate = rate
        self._throttler = Throttler(rate_limit=self._slots(rate), period=self._period(rate))
        self._paused_until = 0.0
        self._last_change = time.monotonic()
        self.waited = 0.0
        """Seconds spent waiting for the budget, summed over all callers."""
        self.decreases = 0

    @staticmethod
    def _slots(rate: float) -> int:
        return max(1, int(rate))

    @staticmethod
    def _period(rate: float) -> float:
        if rate < 1:
            # Below one per second: one slot per 1/rate seconds.
            return (1 + _MIN_MARGIN) / rate
        return 1 + max(_MIN_MARGIN, 1 / rate)

    @property
    def rate(self) -> float:
        return self._rate

    def _apply(self, rate: float) -> None:
        self._rate = rate
        self._throttler.rate_limit = self._slots(rate)
        self._throttler.period = self._period(rate)

    async def acquire(self) -> float:
        """Wait for a send slot; returns the seconds waited."""
        start = time.monotonic()
        while True:
            pause = self._paused_until - time.monotonic()
            if pause <= 0:
                break
            await asyncio.sleep(pause)
        await self._throttler.acquire()  # type: ignore[no-untyped-call]
        waited = time.monotonic() - start
        self.waited += waited
        return waited

    def throttled(self, reset_after: float | None) -> None:
        """The gateway refused for rate: halve (once per second at most) and pause."""
        now = time.monotonic()
        if now - self._last_change >= 1.0 or self._rate == self.configured:
            self._apply(max(self.floor, self._rate / 2))
            self._last_change = now
            self.decreases += 1
        pause = reset_after if reset_after is not None else 1.0
        self._paused_until = max(self._paused_until, now + min(pause, 60.0))

    def succeeded(self) -> None:
        """A request went through: climb back a step per quiet second."""
        if self._rate >= self.configured:
            return
        now = time.monotonic()
        if now - self._last_change >= 1.0:
            step = max(1.0, self.configured / 20)
            self._apply(min(self.configured, self._rate + step))
            self._last_change = now
