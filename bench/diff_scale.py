"""Scenario 3: the diff at scale. A million desired pairs, all known: a no-op cycle.

The known state is built once, in its own process, with ``StateStore.replace_from_cmdb``
(as a resync would leave it), so the timed ``syncd once`` re-reads the topology file,
loads the known keys and diffs, and sends nothing. Then 1% of the file changes (10,000
pairs replaced by new ones) and a second ``syncd once`` sends them to a simulator with
no latency and no rate limit.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bench.common import (
    RELATION,
    ChildResult,
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

_BUILD_STATE = """
import sys, time
from pathlib import Path
from bench.common import grid
from syncd.state import StateStore
switches, hosts = int(sys.argv[2]), int(sys.argv[3])
store, _ = StateStore.open(Path(sys.argv[1]))
rows = ((s, d, i) for i, (s, d) in enumerate(grid(switches, hosts), 1))
started = time.perf_counter()
added, _ = store.resync.replace_from_cmdb(sys.argv[4], rows, time.time())
store.close()
print(added, round(time.perf_counter() - started, 3))
"""


def _relation_line(child: ChildResult) -> dict[str, Any]:
    for line in child.lines():
        if line.get("event") == "relation":
            return line
    raise RuntimeError(f"syncd logged no relation line: {child.stderr.read_text()[-2000:]}")


def run(workdir: Path, pairs: int = 1_000_000, changed: float = 0.01) -> dict[str, Any]:
    """No-op cycle over ``pairs`` known pairs, then one with ``changed`` of them new."""
    workdir.mkdir(parents=True, exist_ok=True)
    switches, hosts = shape(pairs)
    new = int(pairs * changed)
    new_switches = -(-new // hosts)
    topology = write_csv(workdir / "topology.csv", grid(switches, hosts))
    fixture = write_fixture(workdir / "fixture.json", switches + new_switches, hosts)
    state = workdir / "state.db"
    for old in workdir.glob("state.db*"):
        old.unlink()
    built = run_child(
        ["-c", _BUILD_STATE, str(state), str(switches), str(hosts), RELATION],
        workdir / "build.log",
    )
    if built.returncode != 0:
        raise RuntimeError(f"state build failed: {built.stderr.read_text()[-2000:]}")
    added, build_s = built.stdout.read_text().split()
    if int(added) != pairs:
        raise RuntimeError(f"state build added {added} pairs, expected {pairs}")

    with Simulator(fixture) as sim:
        cfg = write_config(
            workdir, sim.url, topology, rate_limit=1e6, concurrency=16, level="info", state=state
        )
        noop = run_syncd_once(cfg, workdir / "noop.log")
        noop_rel = _relation_line(noop)
        if noop_rel["sent"] != 0 or noop_rel["desired"] != pairs:
            raise RuntimeError(f"the no-op cycle was not a no-op: {noop_rel}")

        # 1% changed: the last `new` pairs of the grid give way to as many new ones.
        kept = itertools.islice(grid(switches, hosts), pairs - new)
        fresh = itertools.islice(grid(new_switches, hosts, first_switch=switches + 1), new)
        write_csv(topology, itertools.chain(kept, fresh))
        sim.reset()
        delta = run_syncd_once(cfg, workdir / "delta.log")
        stats = sim.stats()
    delta_rel = _relation_line(delta)
    counts, _ = pair_counts(delta)
    return {
        "pairs": pairs,
        "state_build_s": float(build_s),
        "noop_cycle_s": float(noop_rel["duration"]),
        "noop_wall_s": round(noop.wall, 3),
        "noop_cpu_s": round(noop.cpu, 3),
        "noop_max_rss_mb": round(noop.max_rss_mb, 1),
        "changed_pairs": new,
        "changed_cycle_s": float(delta_rel["duration"]),
        "changed_wall_s": round(delta.wall, 3),
        "changed_cpu_s": round(delta.cpu, 3),
        "changed_max_rss_mb": round(delta.max_rss_mb, 1),
        "changed_created": counts.get("created", 0),
        "changed_absent": int(delta_rel.get("absent", 0)),
        "changed_requests": stats["requests_by_api"].get("batch_create_instance_association", 0),
    }
