"""Gateway-style admission: a request-rate token bucket and a cap on requests in flight.

Both refuse rather than queue, as the BlueKing gateways do, so a client that
overruns its budget sees the real 429 answers and must back off by itself.
"""

from __future__ import annotations

import math
import time
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


class RateLimiter:
    """One bucket per (app, resource), as the API gateway's ``bk-resource-rate-limit``
    keeps them (bk-cmdb publishes ``__default: 100 tokens / 1 s`` per resource,
    docs/apidoc/apigw/open/bk_apigw_resources_bk-cmdb.yaml:3206-3212) and as legacy
    ESB limits an app per component. Buckets restart when the rate changes at runtime."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def check(self, rate: float | None, app: str, resource: str) -> RateDecision | None:
        """None when no limit is configured."""
        if rate is None or rate <= 0:
            self._buckets.clear()
            return None
        key = (app, resource)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = TokenBucket(rate)
        return bucket.take()


class ConcurrencyGate:
    """Counts admitted requests still being served; refuses beyond ``limit``."""

    def __init__(self) -> None:
        self.active = 0

    def try_enter(self, limit: int | None) -> bool:
        if limit is not None and limit > 0 and self.active >= limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1
