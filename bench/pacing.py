"""Scenario 5: what the CMDB sees of syncd's pacing, old sliding log against GCRA.

The same client (``CmdbClient``, in this process) sends the same batches of 200 new
pairs at ``rate_limit = 100`` with 32 requests in flight to a simulator in its own
process (no server limit, 50 ms + 0.1 ms per detail: the rate, not latency, binds).
Once with the limiter syncd had before issue 15 (asyncio-throttle's one-second log of
sends alone, modelled here), once with the GCRA pacer inside that same window. Figures: the
simulator's own ``peak_rps`` over the rate, and throughput as (requests / rate) over
the time the sends took. Then ``syncd once`` (own process, new pacing) over the same
pairs: its cycle time against requests / rate, and the peak the simulator saw.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    BATCH,
    Simulator,
    grid,
    pair_counts,
    run_syncd_once,
    shape,
    write_config,
    write_csv,
    write_fixture,
)
from bench.throughput import _send_phase
from syncd.cmdb.client import CmdbClient
from syncd.cmdb.ratelimit import AdaptiveRateLimiter, RateBudgets
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Verdict

RATE = 100.0
CONCURRENCY = 32
LATENCY_MS = 50.0
PER_DETAIL_MS = 0.1


class SlidingLogLimiter(AdaptiveRateLimiter):
    """The pre-issue-15 limiter: at most ``rate`` sends in any (1 s + margin) log.

    asyncio-throttle 1.0.2's ``Throttler`` (a deque of send times, polled every 10 ms)
    with the margin syncd gave it: 20 ms, or one send interval at low rates.
    """

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self._log: collections.deque[float] = collections.deque()
        self._period = 1 + max(0.02, 1 / rate)

    async def acquire(self) -> float:
        start = time.monotonic()
        while True:  # as the old limiter did: wait out a pause ordered by a 429
            pause = self._paused_until - time.monotonic()
            if pause <= 0:
                break
            await asyncio.sleep(pause)
        while True:
            now = time.monotonic()
            while self._log and now - self._log[0] > self._period:
                self._log.popleft()
            if len(self._log) < max(1, int(self.rate)):
                break
            await asyncio.sleep(0.01)
        self._log.append(time.monotonic())
        self.sent += 1
        waited = time.monotonic() - start
        self.waited += waited
        return waited


def _settings(url: str, rate: float, concurrency: int) -> CmdbSettings:
    return CmdbSettings(
        url=url,
        gateway="esb",
        app_code=APP_CODE,
        app_secret=SecretStr(APP_SECRET),
        rate_limit=rate,
        concurrency=concurrency,
        max_retries=0,
        timeout=120,
    )


async def _send(
    url: str,
    batches: list[list[tuple[int, int]]],
    rate: float,
    concurrency: int,
    old: bool,
    stamps: list[float],
) -> float:
    """Seconds from the first send to the last answer; every batch must be created.

    ``stamps`` gets the moment each request was let out by the limiter.
    """
    async with CmdbClient(_settings(url, rate, concurrency)) as client:
        if old:
            client.budgets = RateBudgets(SlidingLogLimiter(rate))
            client.limiter = client.budgets.write
        budget = client.budgets.write
        acquire = budget.acquire

        async def stamped() -> float:
            waited = await acquire()
            stamps.append(time.monotonic())
            return waited

        budget.acquire = stamped  # type: ignore[method-assign]
        queue = collections.deque(batches)

        async def worker() -> None:
            while queue:
                batch = queue.popleft()
                answer = await client.batch_create("bk_switch", "host", ASST, batch)
                if answer.verdict is not Verdict.OK:
                    raise RuntimeError(f"batch refused: {answer.error}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def peak_in_one_second(stamps: list[float]) -> int:
    """Most sends in any half-open one-second window, counted as the simulator does."""
    ordered = sorted(stamps)
    peak = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def _variant(
    workdir: Path, name: str, pairs: int, rate: float, concurrency: int, old: bool
) -> dict[str, Any]:
    switches, hosts = shape(pairs)
    fixture = write_fixture(workdir / f"fixture-{name}.json", switches, hosts)
    every = list(grid(switches, hosts))
    batches = [every[i : i + BATCH] for i in range(0, len(every), BATCH)]
    with Simulator(fixture, None, LATENCY_MS, PER_DETAIL_MS) as sim:
        stamps: list[float] = []
        seconds = asyncio.run(_send(sim.url, batches, rate, concurrency, old, stamps))
        stats = sim.stats()
    requests = int(stats["requests"])
    return {
        f"{name}_peak_rps": stats["peak_rps"],
        f"{name}_peak_rps_client": peak_in_one_second(stamps),
        f"{name}_peak_over_rate": round(stats["peak_rps"] / rate, 3),
        f"{name}_send_s": round(seconds, 3),
        f"{name}_throughput": round(requests / rate / seconds, 3),
        f"{name}_requests": requests,
    }


def _syncd(workdir: Path, pairs: int, rate: float, concurrency: int) -> dict[str, Any]:
    """``syncd once`` (own process) over the same pairs: the whole cycle at the rate."""
    switches, hosts = shape(pairs)
    fixture = write_fixture(workdir / "fixture-syncd.json", switches, hosts)
    topology = write_csv(workdir / "topology.csv", grid(switches, hosts))
    with Simulator(fixture, None, LATENCY_MS, PER_DETAIL_MS) as sim:
        cfg = write_config(workdir, sim.url, topology, rate_limit=rate, concurrency=concurrency)
        child = run_syncd_once(cfg, workdir / "syncd.support.log")
        stats = sim.stats()
    counts, cycle = pair_counts(child)
    cycle_s = float(cycle["duration"]) if cycle is not None else child.wall
    requests = int(stats["requests"])
    ideal = requests / rate
    phases = _send_phase(child, (LATENCY_MS + BATCH * PER_DETAIL_MS) / 1000)
    send_s = phases[0] if phases else None
    return {
        "syncd_created": counts.get("created", 0),
        "syncd_requests": requests,
        "syncd_peak_rps": stats["peak_rps"],
        "syncd_peak_over_rate": round(stats["peak_rps"] / rate, 3),
        "syncd_cycle_s": round(cycle_s, 3),
        "syncd_cycle_over_requests_per_rate": round(cycle_s / ideal, 3),
        "syncd_send_phase_s": round(send_s, 3) if send_s else None,
        "syncd_send_phase_over_requests_per_rate": round(send_s / ideal, 3) if send_s else None,
    }


def run(
    workdir: Path,
    pairs: int = 100_000,
    *,
    rate: float = RATE,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """Both limiters over ``pairs`` new pairs; figures as a flat dict."""
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"pairs": pairs, "rate": rate, "concurrency": concurrency}
    out.update(_variant(workdir, "old", pairs, rate, concurrency, old=True))
    out.update(_variant(workdir, "new", pairs, rate, concurrency, old=False))
    out.update(_syncd(workdir, pairs, rate, concurrency))
    out["settings"] = {
        "latency_ms": LATENCY_MS,
        "per_detail_ms": PER_DETAIL_MS,
        "catch_up_s": AdaptiveRateLimiter(rate).catch_up,
    }
    return out
