"""Gateway-style admission: request-rate limits and a cap on requests in flight.

Both refuse rather than queue, as the BlueKing gateways do, so a client that
overruns its budget sees the real 429 answers and must back off by itself. The API
gateway counts in fixed windows (:class:`FixedWindow`); the ESB's limit is kept as a
token bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one rate check plus the values for the ``X-Bkapi-RateLimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Whole seconds until the bucket is full again."""


class TokenBucket:
    """``rate`` tokens per second, a burst of at most ``max(1, rate)``; one token per request."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._stamp = time.monotonic()

    def take(self) -> RateDecision:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        allowed = self.tokens >= 1.0
        if allowed:
            self.tokens -= 1.0
        missing = self.capacity - self.tokens
        reset = math.ceil(missing / self.rate) if missing > 0 else 0
        return RateDecision(allowed, int(self.capacity), int(self.tokens), reset)


class FixedWindow:
    """The API gateway's ``bk-resource-rate-limit``: a counter per key in Redis, set to
    ``limit - 1`` with a TTL of the period by the first request, then decremented by
    every request, allowed or not, until it expires; refused once below zero
    (blueking-apigateway-apisix src/apisix/plugins/bk-rate-limit/rate-limit-redis.lua:
    76-84,182-185). So a burst that spends the window is refused until it ends, and up
    to twice the limit passes across a window boundary. A rate below 1/s is one
    request per ``1/rate`` seconds."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.limit = max(1, int(rate))
        self.period = 1.0 if rate >= 1 else 1.0 / rate
        self._clock = clock
        self._ends = -math.inf
        self._left = 0

    def take(self) -> RateDecision:
        now = self._clock()
        if now >= self._ends:
            self._ends = now + self.period
            self._left = self.limit - 1
        else:
            self._left -= 1
        reset = max(0, math.ceil(self._ends - now))
        return RateDecision(self._left >= 0, self.limit, max(0, self._left), reset)


class RateLimiter:
    """One bucket per (app, resource), as the API gateway's ``bk-resource-rate-limit``
    keeps them (bk-cmdb publishes ``__default: 100 tokens / 1 s`` per resource,
    docs/apidoc/apigw/open/bk_apigw_resources_bk-cmdb.yaml:3206-3212) and as legacy
    ESB limits an app per component. Buckets restart when the rate changes at runtime."""

    def __init__(self, *, fixed_window: bool = False) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket | FixedWindow] = {}
        self._kind = FixedWindow if fixed_window else TokenBucket

    def check(self, rate: float | None, app: str, resource: str) -> RateDecision | None:
        """None when no limit is configured."""
        if rate is None or rate <= 0:
            self._buckets.clear()
            return None
        key = (app, resource)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = self._kind(rate)
        return bucket.take()


class ConcurrencyGate:
    """Counts admitted requests still being served, per key (the API gateway's is per
    gateway, stage and app); refuses beyond ``limit``."""

    def __init__(self) -> None:
        self._active: dict[str, int] = {}

    @property
    def active(self) -> int:
        """Requests being served, all keys together."""
        return sum(self._active.values())

    def try_enter(self, limit: int | None, key: str = "") -> bool:
        held = self._active.get(key, 0)
        if limit is not None and limit > 0 and held >= limit:
            return False
        self._active[key] = held + 1
        return True

    def leave(self, key: str = "") -> None:
        left = self._active.get(key, 0) - 1
        if left > 0:
            self._active[key] = left
        else:
            self._active.pop(key, None)
