"""Server-side counters, so tests can prove what a client really did on the wire.

``peak_rps`` counts arrivals (refused ones too) in any sliding one-second
window; ``peak_in_flight`` the most requests open at once, refused ones included.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any


class Stats:
    """Counters for the CMDB APIs (the ``/_sim/*`` endpoints are not counted)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.requests = 0
        self.by_api: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self.by_api_status: dict[str, Counter[str]] = {}
        self.faults: Counter[str] = Counter()
        self.faults_by_api: dict[str, Counter[str]] = {}
        self.details_received = 0
        self.max_batch = 0
        self.pairs_created = 0
        self.pairs_deleted = 0
        self.peak_rps = 0
        self.rows_skipped = 0
        self.skip_cost_s = 0.0
        # Requests open across a reset still leave later: keep counting them.
        self.in_flight = getattr(self, "in_flight", 0)
        self.peak_in_flight = self.in_flight
        self._arrivals: deque[float] = deque()

    def arrive(self) -> None:
        now = time.monotonic()
        arrivals = self._arrivals
        arrivals.append(now)
        while arrivals[0] <= now - 1.0:
            arrivals.popleft()
        self.peak_rps = max(self.peak_rps, len(arrivals))
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def depart(self, api: str, status: str, code: int | None) -> None:
        self.in_flight -= 1
        self.by_api[api] += 1
        self.by_status[status] += 1
        if code is not None:
            self.by_code[str(code)] += 1
        per_api = self.by_api_status.get(api)
        if per_api is None:
            per_api = self.by_api_status[api] = Counter()
        per_api[status] += 1

    def fault(self, api: str, kind: str) -> None:
        """One fault that took effect on a request to ``api``."""
        self.faults[kind] += 1
        per_api = self.faults_by_api.get(api)
        if per_api is None:
            per_api = self.faults_by_api[api] = Counter()
        per_api[kind] += 1

    def skip(self, rows: int, cost_s: float) -> None:
        """Rows a ``page.start`` skipped, and the server time they were charged."""
        self.rows_skipped += rows
        self.skip_cost_s += cost_s

    def batch(self, size: int) -> None:
        self.details_received += size
        self.max_batch = max(self.max_batch, size)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "requests_by_api": dict(self.by_api),
            "requests_by_status": dict(self.by_status),
            "requests_by_code": dict(self.by_code),
            "requests_by_api_status": {k: dict(v) for k, v in self.by_api_status.items()},
            "faults": dict(self.faults),
            "faults_by_api": {k: dict(v) for k, v in self.faults_by_api.items()},
            "details_received": self.details_received,
            "max_batch": self.max_batch,
            "pairs_created": self.pairs_created,
            "pairs_deleted": self.pairs_deleted,
            "peak_rps": self.peak_rps,
            "rows_skipped": self.rows_skipped,
            "skip_cost_s": round(self.skip_cost_s, 6),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
