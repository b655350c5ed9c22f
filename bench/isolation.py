"""Scenario: 1% stale hosts on an auth-enabled CMDB; pre-check against reacting.

On an auth-on bk-cmdb a batch naming one host that does not exist is refused as a whole
(1199045). ``syncd once`` (own process) sends a topology where each host has one pair and
every hundredth host id is missing from the CMDB, once with ``sync.host_precheck = "off"``
(each refusal names one stale host: one extra request per stale host) and once with
``"on"`` (``list_hosts_without_biz`` in bulk first; pairs naming a missing host are not
sent). The simulator (own process, auth on) answers at 100 requests/s with 50 ms + 1 ms
per detail, like the throughput scenario.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import (
    APP_CODE,
    APP_SECRET,
    ASST,
    HOST_BASE,
    ChildResult,
    Simulator,
    pair_counts,
    run_child,
    write_config,
    write_csv,
)

RATE = 100.0
LATENCY_MS = 50.0
PER_DETAIL_MS = 1.0
CONCURRENCY = 16
STALE_EVERY = 100
"""One host id in this many is missing from the CMDB (1%)."""
HOSTS_PER_SWITCH = 100


def topology(pairs: int) -> tuple[list[tuple[int, int]], list[int]]:
    """One pair per host, 100 hosts a switch; (pairs, the stale host ids)."""
    rows = [(1 + i // HOSTS_PER_SWITCH, HOST_BASE + 1 + i) for i in range(pairs)]
    stale = [HOST_BASE + 1 + i for i in range(STALE_EVERY - 1, pairs, STALE_EVERY)]
    return rows, stale


def write_fixture(path: Path, pairs: int, stale: list[int]) -> Path:
    """Switches for every pair, hosts for every pair but the stale ones; auth on."""
    ranges: list[list[int]] = []
    low = HOST_BASE + 1
    for host in [*stale, HOST_BASE + pairs + 1]:
        if host > low:
            ranges.append([low, host - 1])
        low = host + 1
    doc = {
        "apps": [{"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET}],
        "auth": True,
        "instance_ranges": {
            "bk_switch": [1, max(1, -(-pairs // HOSTS_PER_SWITCH))],
            "host": ranges,
        },
        "model_associations": [
            {
                "bk_obj_asst_id": ASST,
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": "n:n",
            }
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _once(workdir: Path, fixture: Path, topo: Path, precheck: str) -> dict[str, Any]:
    with Simulator(fixture, RATE, LATENCY_MS, PER_DETAIL_MS) as sim:
        cfg = write_config(workdir, sim.url, topo, rate_limit=RATE, concurrency=CONCURRENCY)
        text = cfg.read_text(encoding="utf-8")
        cfg.write_text(
            text.replace("[sync]\n", f'[sync]\nhost_precheck = "{precheck}"\n'), encoding="utf-8"
        )
        child = run_child(
            ["-m", "syncd", "once", "--config", str(cfg)], workdir / f"{precheck}.log"
        )
        stats = sim.stats()
    return _figures(child, stats)


def _figures(child: ChildResult, stats: dict[str, Any]) -> dict[str, Any]:
    counts, cycle = pair_counts(child)
    by_api = stats["requests_by_api"]
    return {
        "exit": child.returncode,
        "created": counts.get("created", 0),
        "failed": counts.get("failed", 0),
        "requests": stats["requests"],
        "creates": by_api.get("batch_create_instance_association", 0),
        "host_checks": by_api.get("list_hosts_without_biz", 0),
        "isolation_requests": int(cycle["isolation_requests"]) if cycle else None,
        "wall_s": round(child.wall, 3),
    }


def run(workdir: Path, pairs: int = 10_000) -> dict[str, Any]:
    """Both ways over the same topology; figures as a flat dict with ratios."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows, stale = topology(pairs)
    topo = write_csv(workdir / "topology.csv", rows)
    fixture = write_fixture(workdir / "fixture.json", pairs, stale)
    reacting = _once(workdir, fixture, topo, "off")
    precheck = _once(workdir, fixture, topo, "on")
    # What the pre-check costs when nothing is stale.
    clean = write_fixture(workdir / "clean.json", pairs, [])
    clean_reacting = _once(workdir, clean, topo, "off")
    clean_precheck = _once(workdir, clean, topo, "on")
    out: dict[str, Any] = {"pairs": pairs, "stale_hosts": len(stale)}
    for name, figures in (("reacting", reacting), ("precheck", precheck)):
        out.update({f"{name}_{key}": value for key, value in figures.items()})
    out["clean_reacting_requests"] = clean_reacting["requests"]
    out["clean_precheck_requests"] = clean_precheck["requests"]
    out["requests_precheck_over_reacting"] = round(precheck["requests"] / reacting["requests"], 3)
    out["wall_precheck_over_reacting"] = round(precheck["wall_s"] / reacting["wall_s"], 3)
    out["clean_requests_precheck_over_reacting"] = round(
        clean_precheck["requests"] / clean_reacting["requests"], 3
    )
    return out
