"""Scenario 1: new pairs at the gateway's limit; how much of the CMDB's budget syncd uses.

The simulator (own process) answers at 100 requests/s with 50 ms + 1 ms per detail;
``syncd once`` (own process) sends every pair with concurrency 16. Efficiency is the
ideal time (the larger of requests / rate and the latency-bound time) over the time
actually taken, once for the cycle itself and once for the whole process (interpreter
start and imports included).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    BATCH,
    ChildResult,
    Simulator,
    batch_sizes,
    grid,
    ideal_time,
    pair_counts,
    run_syncd_once,
    shape,
    write_config,
    write_csv,
    write_fixture,
)

RATE = 100.0
LATENCY_MS = 50.0
PER_DETAIL_MS = 1.0
CONCURRENCY = 16


async def _floor(url: str, pairs: list[tuple[int, int]], concurrency: int) -> float:
    """Seconds a bare aiohttp client (no state, no logs, no limiter) takes to send ``pairs``."""
    endpoint = f"{url}/api/c/compapi/v2/cc/batch_create_instance_association/"
    base = {
        "bk_app_code": APP_CODE,
        "bk_app_secret": APP_SECRET,
        "bk_username": "admin",
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": ASST,
    }
    bodies = [
        json.dumps(
            {**base, "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in chunk]}
        ).encode()
        for chunk in (pairs[i : i + BATCH] for i in range(0, len(pairs), BATCH))
    ]
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            async with slots, session.post(endpoint, data=body) as resp:
                doc = await resp.json()
                if not doc.get("result"):
                    raise RuntimeError(f"floor client refused: {doc.get('message')}")

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started


def _send_phase(child: ChildResult, first_latency: float) -> tuple[float, float] | None:
    """(send phase, cycle start to the first request out): the send phase is first pair
    line to last, plus the first request's nominal latency."""
    first = last = end = duration = None
    for line in child.lines():
        if line.get("event") == "pair":
            stamp = datetime.fromisoformat(line["timestamp"]).timestamp()
            first = stamp if first is None else first
            last = stamp
        elif line.get("event") == "cycle":
            end = datetime.fromisoformat(line["timestamp"]).timestamp()
            duration = float(line["duration"])
    if first is None or last is None:
        return None
    send = last - first + first_latency
    before = first - first_latency - (end - duration) if end and duration else None
    return send, (round(before, 3) if before is not None else float("nan"))


def _phases(child: ChildResult) -> dict[str, float]:
    """The relation line's phase marks (seconds from the relation's start), as figures."""
    for line in child.lines("relation"):
        if line.get("event") == "relation" and isinstance(line.get("phases"), dict):
            return {
                f"phase_{name}_s": float(at)
                for name, at in line["phases"].items()
                if name in ("read", "observed", "planned", "sending")
            }
    return {}


def run(
    workdir: Path,
    pairs: int = 100_000,
    *,
    rate: float = RATE,
    latency_ms: float = LATENCY_MS,
    per_detail_ms: float = PER_DETAIL_MS,
    concurrency: int = CONCURRENCY,
    level: str = "info",
    profile: Path | None = None,
) -> dict[str, Any]:
    """Send ``pairs`` new pairs through ``syncd once``; figures as a flat dict."""
    workdir.mkdir(parents=True, exist_ok=True)
    switches, hosts = shape(pairs)
    topology = write_csv(workdir / "topology.csv", grid(switches, hosts))
    fixture = write_fixture(workdir / "fixture.json", switches, hosts)
    with Simulator(fixture, rate, latency_ms, per_detail_ms) as sim:
        cfg = write_config(
            workdir, sim.url, topology, rate_limit=rate, concurrency=concurrency, level=level
        )
        child = run_syncd_once(cfg, workdir / "syncd.support.log", profile)
        stats = sim.stats()
    with Simulator(fixture, rate, latency_ms, per_detail_ms) as sim:
        floor_s = asyncio.run(_floor(sim.url, list(grid(switches, hosts)), concurrency))
    counts, cycle = pair_counts(child)
    sizes = batch_sizes(pairs)
    ideal = ideal_time(sizes, rate, latency_ms, per_detail_ms, concurrency)
    creates = stats["requests_by_api"].get("batch_create_instance_association", 0)
    # The cycle line is an info line; at level warning only the process wall time is known.
    cycle_s = float(cycle["duration"]) if cycle is not None else child.wall
    phases = _send_phase(child, (latency_ms + min(pairs, BATCH) * per_detail_ms) / 1000)
    send_s, before_s = phases if phases else (None, None)
    return {
        "pairs": pairs,
        "created": counts.get("created", 0),
        "pair_lines": sum(counts.values()),
        "requests": creates,
        "requests_total": stats["requests"],
        "http_429": int(stats["requests_by_status"].get("429", 0))
        + int(stats["requests_by_code"].get("1306429", 0)),
        "max_batch": stats["max_batch"],
        "ideal_s": round(ideal, 3),
        "cycle_s": round(cycle_s, 3),
        "wall_s": round(child.wall, 3),
        "efficiency": round(ideal / cycle_s, 3),
        "efficiency_process": round(ideal / child.wall, 3),
        "send_phase_s": round(send_s, 3) if send_s else None,
        "efficiency_send_phase": round(ideal / send_s, 3) if send_s else None,
        # What runs besides the sends (source read, diff, CMDB reads; the state after),
        # and of it, what runs before the first request leaves.
        "cycle_minus_send_s": round(cycle_s - send_s, 3) if send_s else None,
        "pre_send_s": before_s,
        # Of it: when the source was read, the known pairs observed too (the CMDB's
        # answers, for a first sync), the plan made, and the first create about to leave.
        **_phases(child),
        "floor_client_s": round(floor_s, 3),
        "efficiency_floor_client": round(ideal / floor_s, 3),
        "peak_rps_server": stats["peak_rps"],
        "peak_in_flight_server": stats["peak_in_flight"],
        "cpu_s": round(child.cpu, 3),
        "cpu_s_per_100k": round(child.cpu * 100_000 / pairs, 3),
        "max_rss_mb": round(child.max_rss_mb, 1),
        "simulator_cpu_s": round(sim.cpu, 3),
        "settings": {
            "rate": rate,
            "latency_ms": latency_ms,
            "per_detail_ms": per_detail_ms,
            "concurrency": concurrency,
        },
    }
