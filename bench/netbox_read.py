"""Scenario: reading N cables from NetBox, one page at a time (as before) and 4 pages at once.

NetBox itself is the cost: on a real NetBox 4.7.3, reading 1,500 cables took ~10 s, nearly
all of it NetBox serialising them (~5 ms a cable). The loopback stand-in
(bench/netbox_standin.py) serves cables cut from the recorded ones with NetBox's
pagination and that cost per cable (``cost_ms``), ``workers`` requests at a time; the
device lookups cost ``device_cost_ms`` a device (not measured: light with ``fields=``).
The stand-in runs in its own process (NetBox's work is not syncd's), a fresh one for each
read; both reads run the real NetBoxSource in this process; the ratio is taken in one run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import REPO
from bench.netbox_standin import STATS
from syncd.sources.netbox import NetBoxSource
from syncd.sources.settings import NetBoxSourceSettings

COST_MS = 5.0
DEVICE_COST_MS = 0.1
WORKERS = 8


@contextmanager
def standin(cables: int, cost_ms: float, device_cost_ms: float, workers: int) -> Iterator[str]:
    """``python -m bench.netbox_standin`` in its own process; yields its URL."""
    args = [sys.executable, "-m", "bench.netbox_standin", "--cables", str(cables)]
    args += ["--cost-ms", str(cost_ms), "--device-cost-ms", str(device_cost_ms)]
    args += ["--workers", str(workers)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            url = str(json.loads(line)["url"])
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"stand-in did not start: {line!r}") from exc
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _read(url: str, *, concurrency: int, page_size: int) -> dict[str, Any]:
    settings = NetBoxSourceSettings.model_validate(
        {
            "type": "netbox",
            "url": url,
            "token": "0123456789abcdef0123456789abcdef01234567",
            "page_size": page_size,
            "concurrency": concurrency,
            "timeout": 120,
        }
    )
    source = NetBoxSource(settings, name="bench")
    started = time.perf_counter()
    facts = [f for chunk in [c async for c in source.facts()] for f in chunk]
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 3),
        "facts": len(facts),
        "pairs": sorted((str(f[0]), str(f[1])) for f in facts),
    }


def _measure(url: str, *, concurrency: int, page_size: int) -> dict[str, Any]:
    """One read and the stand-in's counters for it."""
    figures = asyncio.run(_read(url, concurrency=concurrency, page_size=page_size))
    with urllib.request.urlopen(f"{url}{STATS}", timeout=10) as resp:
        figures.update(json.loads(resp.read()))
    return figures


def run(
    workdir: Path,
    cables: int = 1_500,
    *,
    cost_ms: float = COST_MS,
    device_cost_ms: float = DEVICE_COST_MS,
    workers: int = WORKERS,
    page_size: int = 1000,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Sequential, then concurrent, read of ``cables`` cables; same stand-in settings."""
    with standin(cables, cost_ms, device_cost_ms, workers) as url:
        seq = _measure(url, concurrency=1, page_size=page_size)
    with standin(cables, cost_ms, device_cost_ms, workers) as url:
        par = _measure(url, concurrency=concurrency, page_size=page_size)
    if seq["pairs"] != par["pairs"] or seq["facts"] != cables:
        raise RuntimeError("the concurrent read did not return the sequential read's pairs")
    return {
        "cables": cables,
        "cost_ms_per_cable": cost_ms,
        "page_size": page_size,
        "concurrency": concurrency,
        "netbox_workers": workers,
        "sequential_s": seq["wall_s"],
        "sequential_requests": seq["requests"],
        "concurrent_s": par["wall_s"],
        "concurrent_requests": par["requests"],
        "concurrent_list_requests": par["list_requests"],
        "peak_in_flight": par["peak_in_flight"],
        "speedup": round(seq["wall_s"] / par["wall_s"], 2),
    }
