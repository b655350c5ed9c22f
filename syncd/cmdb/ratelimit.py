"""Send budgets that pace requests evenly, and back off when the gateway says 429.

Requests leave spaced by ``1/rate`` (GCRA, the generic cell rate algorithm: one
"theoretical arrival time" per budget). A send woken up late (a busy event loop,
a descheduled process) may be made up within ``CATCH_UP`` seconds, so the
throughput stays at the rate; idling earns no credit, so no burst follows a
pause; and a one-second window (asyncio-throttle's ``Throttler``, a log of the
last ``rate`` sends; the unit tests inject the same log on virtual time) makes
sure that catching up never puts more than ``rate`` sends in any one-second
window. A gateway that counts per second thus sees the rate, evenly, not the
bunches the window alone lets out (up to ``rate`` sends at once, then nothing).

On a 429 the rate is halved and all senders pause until the gateway's window
resets; it then climbs back additively, a step per quiet second (AIMD, as TCP
does), so syncd settles just under the real limit even when configured above it.

The API gateway limits each resource separately, so there reads and writes get
a budget each; the ESB counts one app's calls together: one shared budget.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from asyncio_throttle.throttler import Throttler

CATCH_UP = 0.02
"""Seconds of lateness a send may make up (at least one send interval). More keeps the
throughput closer to the rate on a loaded machine but lets sends bunch, which the
gateway's own clock, jittered by loopback and scheduling, may count as too many."""

EDGE = 0.001
"""Seconds past the one-second window the cap waits (costs 0.1% of the rate at most):
evenly spaced sends would otherwise sit on the window's very edge, where microseconds
decide whether a counter sees ``rate`` or ``rate + 1``."""

WINDOW = 1.0 + EDGE
"""Seconds of the window that may hold at most ``rate`` sends."""

POLL = 0.001
"""Seconds between the ``Throttler``'s checks of a full window (its default, 10 ms,
would add up to 10 ms of jitter to a send the window holds back)."""

MAX_PAUSE = 60.0
"""Longest pause a single refusal can impose, whatever its reset header says."""

WRITE_APIS = frozenset({"batch_create_instance_association", "delete_related_inst_asso"})
"""APIs that change the CMDB; every other call is a read (searches, counts, lookups, watch)."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Gcra:
    """Even spacing that makes up late sends; pure arithmetic on times the caller supplies.

    ``tat`` is the theoretical arrival time of the next send: a send may leave at
    ``tat - tolerance`` or later, and pushes ``tat`` one interval on, so a send
    that left late lets the next leave early. The tolerance is ``catch_up``
    seconds but at least one interval (none if 0). A send at or after ``tat``
    (the budget idled, or fell behind by more than the tolerance) starts afresh
    without credit: the next one waits a whole interval, so idling buys no burst.
    """

    def __init__(self, rate: float, catch_up: float = 0.0) -> None:
        self.tat = -math.inf
        self.catch_up = catch_up
        self.interval = 1.0
        self.tolerance = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.tolerance = max(self.catch_up, self.interval) if self.catch_up > 0 else 0.0

    def delay(self, now: float) -> float:
        """Seconds until the next send may leave (0: now)."""
        return max(0.0, self.tat - self.tolerance - now)

    def take(self, now: float) -> None:
        """Record one send at ``now``."""
        if now >= self.tat:
            self.tat = now + self.tolerance + self.interval
        else:
            self.tat += self.interval


class Window(Protocol):
    """At most ``rate_limit`` sends in any window of ``WINDOW`` seconds.

    ``acquire`` returns when one more send fits, and records it. Two kinds exist
    because ``asyncio_throttle.Throttler`` (production) polls the real monotonic
    clock, while the unit tests drive the limiter on virtual time: they inject a
    ``OneSecondCap`` on their clock and sleep.
    """

    rate_limit: int

    async def acquire(self) -> None: ...


def window_limit(rate: float) -> int:
    """Sends a window may hold at ``rate``: evenly spaced sends at a fractional rate put
    ``ceil(rate)`` in some windows."""
    return max(1, math.ceil(rate - 1e-9))


def throttler_window(rate: float) -> Throttler:
    """The production window: asyncio-throttle's log of the last ``rate_limit`` sends."""
    return Throttler(rate_limit=window_limit(rate), period=WINDOW, retry_interval=POLL)


class OneSecondCap:
    """The ``Throttler``'s window on an injected clock: the times of the last ``rate_limit``.

    A send waits until the one ``rate_limit`` sends back is ``WINDOW`` seconds old.
    ``delay`` and ``take`` are pure arithmetic on the times the caller supplies.
    """

    def __init__(
        self, rate_limit: int = 1, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._log: deque[float] = deque()
        self.rate_limit = rate_limit
        self._clock = clock
        self._sleep = sleep

    def delay(self, now: float) -> float:
        if len(self._log) < self.rate_limit:
            return 0.0
        return max(0.0, self._log[-self.rate_limit] + WINDOW - now)

    def take(self, now: float) -> None:
        self._log.append(now)
        while len(self._log) > self.rate_limit:
            self._log.popleft()

    async def acquire(self) -> None:
        while (wait := self.delay(self._clock())) > 0:
            await self._sleep(wait)
        self.take(self._clock())


class AdaptiveRateLimiter:
    """One send budget; ``acquire`` before every request attempt.

    Waiters queue in arrival order (an ``asyncio.Lock`` is FIFO); the head of the
    queue sleeps until its GCRA slot and re-checks on waking, so a rate change or a
    pause ordered meanwhile applies to it at once; then the window (by default a
    ``Throttler``) lets it out once the last second holds fewer than the rate. A pause
    ordered while the window holds a send back (briefly: only catch-up fills it)
    applies from the next send. ``clock``, ``sleep`` and ``window`` are injectable so tests
    can run on virtual time.
    """

    def __init__(
        self,
        rate: float,
        *,
        floor: float = 1.0,
        catch_up: float = CATCH_UP,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        window: Window | None = None,
    ) -> None:
        self.configured = rate
        self.floor = min(floor, rate)
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._gcra = Gcra(rate, catch_up)
        self._window: Window = window if window is not None else throttler_window(rate)
        self._window.rate_limit = window_limit(rate)
        self._queue = asyncio.Lock()
        self._paused_until = -math.inf
        self._last_change = clock()
        self.waited = 0.0
        """Seconds spent waiting for the budget, summed over all callers."""
        self.decreases = 0
        self.sent = 0
        """Sends let out so far."""

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def catch_up(self) -> float:
        """Seconds of lateness the budget makes up at its current rate."""
        return self._gcra.tolerance

    def _apply(self, rate: float) -> None:
        self._rate = rate
        self._gcra.set_rate(rate)
        self._window.rate_limit = window_limit(rate)

    @property
    def window(self) -> Window:
        """The one-second cap under the pacing."""
        return self._window

    def delay(self) -> float:
        """Seconds the next send would wait now for its slot and any pause (not counting
        the window, which holds a send back only after catch-up, and by 1 ms at the edge)."""
        now = self._clock()
        return max(self._gcra.delay(now), self._paused_until - now)

    async def acquire(self) -> float:
        """Wait for a send slot; returns the seconds waited."""
        start = self._clock()
        async with self._queue:
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            await self._window.acquire()
            now = self._clock()  # no await since the window recorded the send
            self._gcra.take(now)
            self.sent += 1
        waited = now - start
        self.waited += waited
        return waited

    def throttled(self, reset_after: float | None) -> None:
        """The gateway refused for rate: halve (once per second at most) and pause."""
        now = self._clock()
        if now - self._last_change >= 1.0 or self._rate == self.configured:
            self._apply(max(self.floor, self._rate / 2))
            self._last_change = now
            self.decreases += 1
        pause = reset_after if reset_after is not None else 1.0
        self._paused_until = max(self._paused_until, now + min(pause, MAX_PAUSE))

    def succeeded(self) -> None:
        """A request went through: climb back a step per quiet second."""
        if self._rate >= self.configured:
            return
        now = self._clock()
        if now - self._last_change >= 1.0:
            step = max(1.0, self.configured / 20)
            self._apply(min(self.configured, self._rate + step))
            self._last_change = now


class RateBudgets:
    """The client's budgets: reads and writes apart on the API gateway, shared on the ESB."""

    def __init__(self, write: AdaptiveRateLimiter, read: AdaptiveRateLimiter | None = None) -> None:
        self.write = write
        self.read = read if read is not None else write

    @classmethod
    def for_gateway(
        cls, gateway: Literal["esb", "apigw"], rate: float, read_rate: float | None = None
    ) -> RateBudgets:
        """``read_rate`` (default: ``rate``) only counts on the API gateway."""
        write = AdaptiveRateLimiter(rate)
        if gateway != "apigw":
            return cls(write)
        return cls(write, AdaptiveRateLimiter(read_rate if read_rate is not None else rate))

    @property
    def shared(self) -> bool:
        return self.read is self.write

    def for_api(self, api_name: str) -> AdaptiveRateLimiter:
        return self.write if api_name in WRITE_APIS else self.read
