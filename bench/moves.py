"""Scenario: 10,000 hosts re-cabled at once under a ``1:n`` model association.

Each host moves to another switch in one source change. ``syncd once`` (own process)
first syncs the old cabling, then the new one: every move deletes its old pair
(``delete_related_inst_asso``, 500 ids a request) before any create
(``batch_create_instance_association``, 200 a request), all under one rate limit. The
simulator (own process) answers at 100 requests/s with 50 ms a request + 1 ms per
created detail, like the throughput scenario.

**Ideal**: deletes must finish before their creates, so the two phases run in sequence:
ideal = ideal(deletes) + ideal(creates), each the larger of requests / rate and the
latency-bound time at ``concurrency`` in flight. Requests ideal = ⌈n/500⌉ + ⌈n/200⌉.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    HOST_BASE,
    Simulator,
    batch_sizes,
    ideal_time,
    pair_counts,
    run_syncd_once,
    write_config,
    write_csv,
)

RATE = 100.0
LATENCY_MS = 50.0
PER_DETAIL_MS = 1.0
CONCURRENCY = 16
HOSTS_PER_SWITCH = 100
DELETE_BATCH = 500


def cabling(hosts: int, shift: int) -> list[tuple[int, int]]:
    """One pair per host, 100 hosts a switch; ``shift`` moves every host ``shift`` switches on."""
    return [(1 + shift + i // HOSTS_PER_SWITCH, HOST_BASE + 1 + i) for i in range(hosts)]


def write_fixture(path: Path, switches: int, hosts: int) -> Path:
    doc = {
        "apps": [{"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET}],
        "instance_ranges": {
            "bk_switch": [1, switches],
            "host": [HOST_BASE + 1, HOST_BASE + hosts],
        },
        "model_associations": [
            {
                "bk_obj_asst_id": ASST,
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": "1:n",
            }
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run(
    workdir: Path,
    hosts: int = 10_000,
    *,
    latency_ms: float = LATENCY_MS,
    per_detail_ms: float = PER_DETAIL_MS,
) -> dict[str, Any]:
    """Sync the old cabling, re-cable every host, time the cycle that moves them."""
    workdir.mkdir(parents=True, exist_ok=True)
    switches = -(-hosts // HOSTS_PER_SWITCH)
    fixture = write_fixture(workdir / "fixture.json", 2 * switches, hosts)
    topo = write_csv(workdir / "topology.csv", cabling(hosts, 0))
    with Simulator(fixture, RATE, latency_ms, per_detail_ms) as sim:
        cfg = write_config(workdir, sim.url, topo, rate_limit=RATE, concurrency=CONCURRENCY)
        cfg.write_text(
            cfg.read_text(encoding="utf-8")
            + f"\n[relations.moves]\nmax_count = {hosts}\nmax_fraction = 1.0\n",
            encoding="utf-8",
        )
        first = run_syncd_once(cfg, workdir / "first.log")
        write_csv(topo, cabling(hosts, switches))
        sim.reset()
        child = run_syncd_once(cfg, workdir / "moves.log")
        stats = sim.stats()
    counts, cycle = pair_counts(child)
    by_api = stats["requests_by_api"]
    deletes = by_api.get("delete_related_inst_asso", 0)
    creates = by_api.get("batch_create_instance_association", 0)
    delete_batches = [min(DELETE_BATCH, hosts - i) for i in range(0, hosts, DELETE_BATCH)]
    ideal = ideal_time(delete_batches, RATE, latency_ms, 0.0, CONCURRENCY) + ideal_time(
        batch_sizes(hosts), RATE, latency_ms, per_detail_ms, CONCURRENCY
    )
    ideal_requests = math.ceil(hosts / DELETE_BATCH) + math.ceil(hosts / 200)
    cycle_s = float(cycle["duration"]) if cycle else child.wall
    _, first_cycle = pair_counts(first)
    first_s = float(first_cycle["duration"]) if first_cycle else first.wall
    create_ideal = ideal_time(batch_sizes(hosts), RATE, latency_ms, per_detail_ms, CONCURRENCY)
    moved = int(cycle["moved"]) if cycle and "moved" in cycle else None
    return {
        "hosts": hosts,
        "moved": moved,
        "created": counts.get("created", 0),
        "failed": counts.get("failed", 0),
        "delete_requests": deletes,
        "create_requests": creates,
        "write_requests": deletes + creates,
        "ideal_requests": ideal_requests,
        "requests_over_ideal": round((deletes + creates) / ideal_requests, 3),
        "all_requests": stats["requests"],
        "ideal_s": round(ideal, 3),
        "cycle_s": round(cycle_s, 3),
        "efficiency": round(ideal / cycle_s, 3) if cycle_s else None,
        "first_sync_cycle_s": round(first_s, 3),
        "first_sync_efficiency": round(create_ideal / first_s, 3) if first_s else None,
        "moves_over_first_sync": round(cycle_s / first_s, 3) if first_s else None,
        "wall_s": round(child.wall, 3),
        "cpu_s": round(child.cpu, 3),
        "max_rss_mb": round(child.max_rss_mb, 1),
    }
