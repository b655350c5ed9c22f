"""``python -m bench --compare OLD [NEW]``: every figure of a run against an earlier one.

Figures are matched by scenario and name; each row shows both values and new / old.
A figure whose better direction is known (times, CPU, memory lower; efficiency,
speed-ups, pairs per CPU-second higher) and that moved the wrong way by more than
:data:`NOISE` is marked ``worse``, so a regression shows in one command. The machine
is shared: compare runs of one session, and rerun before believing a small change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

NOISE = 0.10
"""Moves smaller than this share are this machine's noise, not a verdict."""

_HIGHER = ("efficiency", "speedup", "throughput", "per_cpu_s", "_over_syncd", "offset_over_key")
_LOWER = re.compile(r"_(s|mb|ms)(_|$)|us_per_pair|cpu_s|peak_over_rate|over_pages_per_rate")
_SKIP = {"bench_s", "pairs", "machine", "quick", "targets", "settings"}


def load(path: Path) -> dict[str, Any]:
    """A results file written by ``python -m bench``."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "machine" not in doc:
        raise ValueError(f"{path}: not a bench results file")
    return doc


def direction(name: str) -> int:
    """+1 higher is better, -1 lower is better, 0 not known (counts, settings)."""
    if any(part in name for part in _HIGHER):
        return 1
    if _LOWER.search(name):
        return -1
    return 0


def figures(results: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(scenario, figure) -> value, for every number of a run."""
    out: dict[tuple[str, str], float] = {}
    for section, values in results.items():
        if section in _SKIP or not isinstance(values, dict):
            continue
        for name, value in values.items():
            if name in _SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            out[(section, name)] = float(value)
    return out


def verdict(name: str, old: float, new: float) -> str:
    """'better', 'worse', or '' (within the noise, or no known direction)."""
    way = direction(name)
    if not way or old == 0 or abs(new - old) <= NOISE * abs(old):
        return ""
    return "better" if (new - old) * way > 0 else "worse"


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A table: scenario, figure, old, new, new / old, verdict; figures in both runs."""
    before, after = figures(old), figures(new)
    rows = []
    for key, value in after.items():
        if key not in before:
            continue
        then = before[key]
        ratio = f"{value / then:.3f}" if then else "n/a"
        rows.append((*key, _num(then), _num(value), ratio, verdict(key[1], then, value)))
    head = f"{old['machine']['date']} -> {new['machine']['date']}"
    if not rows:
        return head + "\n\nno figure in common"
    width = max(len(r[1]) for r in rows)
    lines = [
        head,
        "",
        f"{'scenario':<11} {'figure':<{width}}  {'old':>12} {'new':>12} {'new/old':>8}",
    ]
    lines += [
        f"{s:<11} {k:<{width}}  {o:>12} {n:>12} {r:>8}  {v}".rstrip() for s, k, o, n, r, v in rows
    ]
    worse = sum(1 for r in rows if r[5] == "worse")
    lines += ["", f"{len(rows)} figures compared, {worse} worse by more than {NOISE:.0%}"]
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{int(value):,}" if value.is_integer() and abs(value) >= 1000 else f"{value:g}"
