"""A SIGKILL between a move's delete and its create: the next cycle completes the move,
nothing is doubled, and the new pair is owned (so it can move again later)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import Proc, load, start_simulator, write_config, write_csv
from tests.runtime.test_daemon_process import cmdb_pairs, write_fixture

V1 = [(1, 1000 + h) for h in range(1, 11)]
V2 = [(2, 1000 + h) for h in range(1, 6)] + [(1, 1000 + h) for h in range(6, 11)]


def owned(cfg: Path) -> set[tuple[int, int]]:
    db = sqlite3.connect(load(cfg).state.path)
    try:
        return {(s, d) for s, d in db.execute("SELECT src, dst FROM pairs WHERE owned = 1")}
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_between_a_moves_delete_and_its_create(tmp_path: Path, procs: list[Proc]) -> None:
    fixture = write_fixture(tmp_path, switches=3, hosts=10, mapping="1:n")
    # Every request waits 0.5 s before the CMDB acts: the kill lands while the creates wait.
    url = start_simulator(procs, fixture, "--latency-ms", "500")
    topology = write_csv(tmp_path / "t.csv", V1)
    cfg = write_config(tmp_path, url, topology, interval=3600)
    first = Proc(["-m", "syncd", "once", "--config", str(cfg)])
    procs.append(first)
    assert first.wait(60) == 0, first.stderr()[-2000:]
    write_csv(topology, V2)

    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(
        lambda line: line.get("operation") == "move" and line.get("outcome") == "deleted",
        timeout=60,
    )
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    steps = [
        (line.get("step"), line.get("outcome"))
        for line in daemon.lines
        if line.get("operation") == "move"
    ]
    assert ("delete", "deleted") in steps and ("create", "created") not in steps
    assert not {(2, 1000 + h) for h in range(1, 6)} & owned(cfg)  # the create was never recorded

    again = Proc(["-m", "syncd", "once", "--config", str(cfg)])
    procs.append(again)
    assert again.wait(60) == 0, again.stderr()[-2000:]
    assert cmdb_pairs(cfg) == set(V2)  # complete, and cmdb_pairs fails on a doubled pair
    assert set(V2) - set(V1) <= owned(cfg)  # the new pairs are syncd's: they may move again
