"""Scenario 4: what each layer costs per pair, with latency and rate limit off.

Four ``syncd`` processes against a simulator that answers at once: N new pairs logged
at level info (every pair line), the same at level warning (no pair lines for created
pairs), a tiny run for the fixed cost (interpreter, imports, config, two CMDB reads),
and a child that only reads the topology file and diffs it. Marginal costs are the
differences; pairs per CPU-second are N over them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import (
    Simulator,
    grid,
    pair_counts,
    run_child,
    run_syncd_once,
    shape,
    write_config,
    write_csv,
    write_fixture,
)

FIXED_PAIRS = 100
CONCURRENCY = 16

_PARSE_DIFF = """
import asyncio, json, sys, time
from pathlib import Path
from syncd.core.batching import plan_batches
from syncd.cmdb.client import CmdbClient
from syncd.config.load import load_settings
from syncd.core.diff import diff
from syncd.engine.desired import make_source, read_ids
from syncd.state import StateStore

settings = load_settings(Path(sys.argv[1]))
rel = settings.relations[0]
store, _ = StateStore.open(Path(sys.argv[2]))

async def main() -> None:
    started = time.process_time()
    desired = (await read_ids(make_source(rel))).pairs
    result = diff(desired, set())
    plan = plan_batches(result.to_create, settings.cmdb.batch_size)
    cpu = time.process_time() - started
    print(json.dumps({"cpu_s": cpu, "pairs": len(desired), "batches": len(plan.batches)}))

asyncio.run(main())
"""


def _per_cpu_s(pairs: int, cpu: float | None) -> int | None:
    return round(pairs / cpu) if cpu else None


def _us(cpu: float | None, pairs: int) -> float | None:
    return round(cpu / pairs * 1e6, 2) if cpu else None


def _positive(x: float) -> float | None:
    """A difference of two noisy CPU figures; None when noise swamps it."""
    return x if x > 0 else None


def run(workdir: Path, pairs: int = 100_000) -> dict[str, Any]:
    """Per-pair CPU of syncd's layers over ``pairs`` new pairs."""
    workdir.mkdir(parents=True, exist_ok=True)
    switches, hosts = shape(pairs)
    topology = write_csv(workdir / "topology.csv", grid(switches, hosts))
    small = write_csv(workdir / "small.csv", grid(*shape(FIXED_PAIRS)))
    fixture = write_fixture(workdir / "fixture.json", switches, hosts)
    cpu: dict[str, float] = {}
    for name, level, topo, expected in (
        ("fixed", "info", small, FIXED_PAIRS),
        ("info", "info", topology, pairs),
        ("warning", "warning", topology, pairs),
    ):
        with Simulator(fixture) as sim:  # fresh: every pair is new
            cfg = write_config(
                workdir, sim.url, topo, rate_limit=1e6, concurrency=CONCURRENCY, level=level
            )
            child = run_syncd_once(cfg, workdir / f"{name}.log")
            created = sim.stats()["pairs_created"]
        if created != expected:
            raise RuntimeError(f"{name}: {created} pairs created, expected {expected}")
        if level == "info" and sum(pair_counts(child)[0].values()) != expected:
            raise RuntimeError(f"{name}: not one pair line per pair")
        cpu[name] = child.cpu
        cpu[f"{name}_rss_mb"] = child.max_rss_mb
    for old in workdir.glob("state.db*"):
        old.unlink()
    parse = run_child(
        ["-c", _PARSE_DIFF, str(workdir / "syncd.toml"), str(workdir / "state.db")],
        workdir / "parse.log",
    )
    if parse.returncode != 0:
        raise RuntimeError(f"parse+diff child failed: {parse.stderr.read_text()[-2000:]}")
    parse_cpu = float(json.loads(parse.stdout.read_text())["cpu_s"])

    marginal = pairs - FIXED_PAIRS
    with_log = _positive(cpu["info"] - cpu["fixed"])
    without_log = _positive(cpu["warning"] - cpu["fixed"])
    client_record = _positive((without_log or 0.0) - parse_cpu)
    logging = _positive((with_log or 0.0) - (without_log or 0.0))
    return {
        "pairs": pairs,
        "cpu_s_process_info": round(cpu["info"], 3),
        "cpu_s_process_warning": round(cpu["warning"], 3),
        "cpu_s_fixed": round(cpu["fixed"], 3),
        "pairs_per_cpu_s_process_info": _per_cpu_s(pairs, cpu["info"]),
        "pairs_per_cpu_s_process_warning": _per_cpu_s(pairs, cpu["warning"]),
        "pairs_per_cpu_s_with_logging": _per_cpu_s(marginal, with_log),
        "pairs_per_cpu_s_without_logging": _per_cpu_s(marginal, without_log),
        "pairs_per_cpu_s_parse_diff": _per_cpu_s(pairs, parse_cpu),
        "pairs_per_cpu_s_client_record": _per_cpu_s(marginal, client_record),
        "pairs_per_cpu_s_logging": _per_cpu_s(marginal, logging),
        "us_per_pair_parse_diff": _us(parse_cpu, pairs),
        "us_per_pair_client_record": _us(client_record, marginal),
        "us_per_pair_logging": _us(logging, marginal),
        "us_per_pair_total": _us(with_log, marginal),
        "max_rss_mb_info": round(cpu["info_rss_mb"], 1),
    }
