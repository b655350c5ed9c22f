"""Ownership survives crashes (issue 13): a pair syncd created stays "owned" however its
answer was lost (a 504 after the CMDB acted, a SIGKILL before the answer was recorded)."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

from tests.helpers import Proc, load, start_simulator, write_config, write_csv
from tests.runtime.test_daemon_process import cmdb_pairs, pairs, write_fixture


def owned_and_not(cfg: Path) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    db = sqlite3.connect(load(cfg).state.path)
    try:
        rows = db.execute("SELECT src, dst, owned FROM pairs").fetchall()
    finally:
        db.close()
    return {(s, d) for s, d, o in rows if o}, {(s, d) for s, d, o in rows if not o}


def test_pairs_created_through_lost_answers_and_kills_are_owned(
    tmp_path: Path, procs: list[Proc]
) -> None:
    existing = [(1, 1001), (1, 1002), (2, 1001)]  # in the CMDB before syncd: never owned
    desired = pairs(10, 60)  # 600 pairs, 30 requests of 20
    fixture = write_fixture(tmp_path, switches=10, hosts=60, existing=existing)
    url = start_simulator(
        procs,
        fixture,
        *("--fault-rate", "0.5", "--fault-kinds", "504-after", "--seed", "13"),
        *("--latency-ms", "20"),
    )
    topology = write_csv(tmp_path / "t.csv", desired)
    cfg = write_config(
        tmp_path,
        url,
        topology,
        cmdb_extra="batch_size = 20",
        concurrency=2,
        interval=0.2,
        extra="prune = { enabled = true, grace_seconds = 0, grace_cycles = 1, max_fraction = 1 }",
    )
    rng = random.Random(13)
    for _ in range(6):  # SIGKILL at seeded random moments of a create-heavy run
        daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
        procs.append(daemon)
        daemon.wait_for(lambda l: l.get("event") in ("pair", "cycle"), timeout=60)
        time.sleep(rng.uniform(0.0, 0.4))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait()
    final = Proc(["-m", "syncd", "once", "--config", str(cfg)])
    procs.append(final)
    assert final.wait(120) == 0, [
        l
        for l in final.lines
        if l.get("level") in ("warning", "error") or l.get("event") in ("cycle", "relation")
    ][-8:]
    in_cmdb = cmdb_pairs(cfg)
    assert in_cmdb == set(desired)
    owned, not_owned = owned_and_not(cfg)
    assert owned == in_cmdb - set(existing)  # every pair syncd created is owned
    assert not_owned == set(existing)
    # Owned means prunable: the pairs syncd created leave the CMDB with the source.
    keep = [p for p in desired if p[0] <= 5]
    write_csv(topology, keep)
    deleted: set[tuple[int, int]] = set()
    for _ in range(2):  # grace_cycles = 1: gone within two cycles
        again = Proc(["-m", "syncd", "once", "--config", str(cfg)])
        procs.append(again)
        again.wait(120)
        deleted |= {
            (l["bk_inst_id"], l["bk_asst_inst_id"])
            for l in again.lines
            if l.get("event") == "pair" and l.get("outcome") == "deleted"
        }
    assert cmdb_pairs(cfg) == set(keep) | set(existing)
    assert deleted == set(desired) - set(keep) - set(existing)
