"""``python -m bench [--quick] [--only NAME ...] [--compare OLD [NEW]]``: run the scenarios,
print a table, save JSON.

Every figure of one run, with the machine it ran on, goes to
``bench/results/bench-<UTC time>[-quick].json`` (and ``latest.json``), so runs compare:
``--compare OLD`` prints this run's figures against an earlier results file,
``--compare OLD NEW`` two files against each other without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    baseline,
    diff_scale,
    isolation,
    moves,
    netbox_read,
    overhead,
    pacing,
    throughput,
    watch,
    webhook_latency,
)
from bench.common import compile_sources, machine
from bench.compare import compare, load

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (full size, quick size)
SIZES = {
    "throughput": (100_000, 2_000),
    "baseline": (100_000, 1_000),
    "diff_scale": (1_000_000, 10_000),
    "overhead": (100_000, 20_000),
    "netbox_read": (1_500, 300),
    "pacing": (100_000, 20_000),
    "isolation": (10_000, 2_000),
    "drift": (1_000, 100),
    "relist": (1_000_000, 5_000),
    "moves": (10_000, 1_000),
    "webhook": (1_500, 300),
    "webhook_large": (50_000, 1_500),
}

TARGETS = {
    "throughput.efficiency >= 0.95": lambda r: r["throughput"]["efficiency"] >= 0.95,
    "throughput.cpu_s_per_100k <= 1": lambda r: r["throughput"]["cpu_s_per_100k"] <= 1.0,
    "throughput.cycle_minus_send_s <= 0.1": lambda r: (
        (r["throughput"].get("cycle_minus_send_s") or 1e9) <= 0.1
    ),
    "baseline: syncd >= 10x faster": lambda r: r["ratios"]["baseline_over_syncd_cycle"] >= 10,
    "diff_scale.noop_cycle_s <= 1": lambda r: r["diff_scale"]["noop_cycle_s"] <= 1.0,
    "diff_scale.noop_max_rss_mb <= 200": lambda r: r["diff_scale"]["noop_max_rss_mb"] <= 200,
    "diff_scale.changed_cycle_s <= 1.2": lambda r: r["diff_scale"]["changed_cycle_s"] <= 1.2,
    "netbox_read.speedup >= 3": lambda r: r["netbox_read"]["speedup"] >= 3,
    "pacing.new_peak_over_rate <= 1.1": lambda r: r["pacing"]["new_peak_over_rate"] <= 1.1,
    "pacing.new_throughput >= 0.95": lambda r: r["pacing"]["new_throughput"] >= 0.95,
    "isolation.requests_precheck_over_reacting < 1": lambda r: (
        r["isolation"]["requests_precheck_over_reacting"] < 1
    ),
    "drift.repair_all_back_s <= 30": lambda r: r["drift"]["repair_all_back_s"] <= 30,
    "drift.peak_over_rate <= 1.1": lambda r: r["drift"]["peak_over_rate"] <= 1.1,
    "relist.key_over_pages_per_rate <= 1.2": lambda r: (
        r["relist"]["key_over_pages_per_rate"] <= 1.2
    ),
    "relist.offset_over_key >= 5": lambda r: r["relist"]["offset_over_key"] >= 5,
    "webhook.create_median_s <= 1": lambda r: r["webhook"]["create_median_s"] <= 1,
    "webhook.delete_median_s <= 1": lambda r: r["webhook"]["delete_median_s"] <= 1,
    "webhook.move_median_s <= 1": lambda r: r["webhook"]["move_median_s"] <= 1,
    "webhook.burst_first_pair_s <= 2": lambda r: r["webhook"]["burst_first_pair_s"] <= 2,
    "webhook.burst_exact": lambda r: r["webhook"]["burst_exact"],
    "webhook_large.create_median_s <= 1": lambda r: r["webhook_large"]["create_median_s"] <= 1,
    "webhook_large.delete_median_s <= 1": lambda r: r["webhook_large"]["delete_median_s"] <= 1,
    "webhook_large.move_median_s <= 1": lambda r: r["webhook_large"]["move_median_s"] <= 1,
}


def run_all(quick: bool, only: list[str], workdir: Path) -> dict[str, Any]:
    """Run the chosen scenarios in order; one dict with every figure."""
    pick = 1 if quick else 0
    scenarios: dict[str, Callable[[Path, int], dict[str, Any]]] = {
        "throughput": throughput.run,
        "baseline": baseline.run,
        "diff_scale": diff_scale.run,
        "overhead": overhead.run,
        "netbox_read": netbox_read.run,
        "pacing": pacing.run,
        "isolation": isolation.run,
        "drift": watch.drift,
        "relist": watch.relist,
        "moves": moves.run,
        "webhook": webhook_latency.run,
        "webhook_large": webhook_latency.run,
    }
    compile_sources()
    results: dict[str, Any] = {"machine": machine(), "quick": quick}
    for name, scenario in scenarios.items():
        if only and name not in only:
            continue
        print(f"bench: {name} ({SIZES[name][pick]:,} pairs) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results[name] = scenario(workdir / name, SIZES[name][pick])
        results[name]["bench_s"] = round(time.perf_counter() - started, 1)
    results["ratios"] = ratios(results)
    if not quick:  # the targets are stated for the full sizes
        results["targets"] = {
            label: check(results) for label, check in TARGETS.items() if _has(results, label)
        }
    return results


def _has(results: dict[str, Any], label: str) -> bool:
    if label.startswith("baseline"):
        return "baseline_over_syncd_cycle" in results.get("ratios", {})
    return label.split(".")[0] in results


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Ratios between scenarios of this run (only those whose both sides ran)."""
    out: dict[str, float] = {}
    tp, base = results.get("throughput"), results.get("baseline")
    if tp and base and tp["pairs"] == base["pairs"]:
        out["baseline_over_syncd_cycle"] = round(base["wall_s"] / tp["cycle_s"], 2)
        out["baseline_over_syncd_process"] = round(base["wall_s"] / tp["wall_s"], 2)
    if tp:
        out["syncd_send_phase_over_floor_client"] = round(
            (tp["send_phase_s"] or tp["cycle_s"]) / tp["floor_client_s"], 3
        )
    ov = results.get("overhead")
    if ov and ov["us_per_pair_logging"] and ov["us_per_pair_total"]:
        out["logging_share_of_cpu"] = round(ov["us_per_pair_logging"] / ov["us_per_pair_total"], 3)
    return out


def table(results: dict[str, Any]) -> str:
    """Every scalar figure as ``scenario  figure  value`` rows."""
    rows: list[tuple[str, str, str]] = []
    for section, figures in results.items():
        if not isinstance(figures, dict) or section == "machine":
            continue
        for key, value in figures.items():
            if isinstance(value, dict):
                continue
            if value is None:
                text = "n/a"
            elif isinstance(value, bool):
                text = "met" if value else "MISSED"
            elif isinstance(value, int):
                text = f"{value:,}"
            else:
                text = str(value)
            rows.append((section, key, text))
    m = results["machine"]
    head = f"{m['date']}  {m['cores']} cores  {m['cpu']}  Python {m['python']}"
    width = max(len(r[1]) for r in rows) if rows else 10
    lines = [head, ""]
    lines += [f"{s:<11} {k:<{width}}  {v:>12}" for s, k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(SIZES), metavar="NAME")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON file")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="OLD: this run against an earlier results file; OLD NEW: two files, no run",
    )
    args = parser.parse_args(argv)
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes OLD, or OLD and NEW")
    try:
        earlier = [load(path) for path in args.compare or ()]
    except (OSError, ValueError) as exc:
        parser.error(f"--compare: {exc}")
    if len(earlier) == 2:
        print(compare(earlier[0], earlier[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        results = run_all(args.quick, args.only, Path(tmp))
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"].replace(":", "").replace("-", "")
    path = args.out / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    (args.out / ("latest-quick.json" if args.quick else "latest.json")).write_text(text)
    print(f"\nbench: results in {path}", file=sys.stderr)
    if earlier:
        print("\n" + compare(earlier[0], results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
