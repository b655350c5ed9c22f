"""Scenario 2: what users do today, a blocking loop sending one 200-detail request at a time.

The cron-script way with BlueKing's SDK, written with the standard library's urllib:
each request waits for the previous answer. Same topology, same simulator settings as
scenario 1, fresh simulator; the ratio to syncd's time is taken in the same run.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    BATCH,
    Simulator,
    grid,
    shape,
    write_fixture,
)
from bench.throughput import LATENCY_MS, PER_DETAIL_MS, RATE


def send_all(url: str, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    """POST every batch in turn; returns (requests, pairs created)."""
    endpoint = f"{url}/api/c/compapi/v2/cc/batch_create_instance_association/"
    created = requests = 0
    for i in range(0, len(pairs), BATCH):
        body = {
            "bk_app_code": APP_CODE,
            "bk_app_secret": APP_SECRET,
            "bk_username": "admin",
            "bk_obj_id": "bk_switch",
            "bk_asst_obj_id": "host",
            "bk_obj_asst_id": ASST,
            "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in pairs[i : i + BATCH]],
        }
        req = urllib.request.Request(
            endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.loads(resp.read())
        requests += 1
        if not doc.get("result"):
            raise RuntimeError(f"request {requests} refused: {doc.get('message')}")
        created += len(doc["data"].get("success_created") or {})
    return requests, created


def run(
    workdir: Path,
    pairs: int = 100_000,
    *,
    rate: float = RATE,
    latency_ms: float = LATENCY_MS,
    per_detail_ms: float = PER_DETAIL_MS,
) -> dict[str, Any]:
    """Time the blocking loop over ``pairs`` new pairs."""
    workdir.mkdir(parents=True, exist_ok=True)
    switches, hosts = shape(pairs)
    fixture = write_fixture(workdir / "fixture.json", switches, hosts)
    topology = list(grid(switches, hosts))
    with Simulator(fixture, rate, latency_ms, per_detail_ms) as sim:
        started = time.perf_counter()
        requests, created = send_all(sim.url, topology)
        wall = time.perf_counter() - started
    if created != pairs:
        raise RuntimeError(f"the blocking loop created {created} of {pairs} pairs")
    return {
        "pairs": pairs,
        "requests": requests,
        "wall_s": round(wall, 3),
        "per_request_ms": round(wall / requests * 1000, 1),
    }
