"""Signals at bad moments (issue 13): the first SIGTERM ends the process within
``shutdown_deadline`` whatever is running; SIGHUP is safe from the first instruction."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from tests.helpers import Proc, start_simulator, write_config, write_csv
from tests.runtime.test_daemon_process import cmdb_pairs, pairs, write_fixture

DEADLINE = 1.0
BOUND = 8.0
"""Far below what holds the process without the fix (a 10 s lock wait, a 60 s command)."""


def test_sighup_from_the_first_instruction_is_held_then_resyncs(
    tmp_path: Path, procs: list[Proc]
) -> None:
    desired = pairs(2, 10)
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=10))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", desired), interval=3600)
    script = str(Path(sys.executable).parent / "syncd")  # the console script
    for launcher in (["-m", "syncd"], [script], ["-m", "syncd"]):
        daemon = Proc([*launcher, "run", "--config", str(cfg)])
        procs.append(daemon)
        _wait_first_instruction(daemon.proc.pid)
        for _ in range(30):  # from syncd's first instruction, through start-up, repeatedly
            daemon.signal(signal.SIGHUP)
            time.sleep(0.02)
        started = daemon.wait_for(lambda l: l.get("event") == "started")
        assert started["pid"] == daemon.proc.pid
        daemon.wait_for(lambda l: l.get("event") == "resync_requested")
        daemon.wait_for(lambda l: l.get("event") == "resync")
        daemon.wait_for(lambda l: l.get("event") == "cycle")
        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert cmdb_pairs(cfg) == set(desired)


def _wait_first_instruction(pid: int) -> None:
    """Until the process runs syncd's first line (it blocks SIGHUP; /proc shows SigBlk).

    Before that the interpreter is still starting, and no Python program can handle a
    signal yet.
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        blocked = next(l for l in status.splitlines() if l.startswith("SigBlk:"))
        if int(blocked.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
            return
        time.sleep(0.001)
    raise AssertionError("the process never blocked SIGHUP")


def test_sigterm_ends_a_daemon_stuck_on_a_state_write(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=10))
    cfg = write_config(
        tmp_path,
        url,
        write_csv(tmp_path / "t.csv", pairs(2, 10)),
        interval=3600,
        shutdown_deadline=DEADLINE,
    )
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "cycle")
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=30)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock: writes wait
    try:
        mark = len(daemon.lines)
        daemon.signal(signal.SIGHUP)  # a resync: its first step is a state write
        daemon.wait_for(lambda l: l.get("event") == "resync_requested", start=mark)
        time.sleep(0.5)  # the write is now waiting on the lock
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(BOUND) == 0  # the wait gave up: a clean stop, not a forced one
        assert not [l for l in daemon.lines if l.get("event") == "shutdown_forced"]
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_sigterm_ends_a_daemon_whose_source_ignores_sigterm(
    tmp_path: Path, procs: list[Proc]
) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=10))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", []), shutdown_deadline=DEADLINE)
    marker = tmp_path / "stubborn.pid"
    stubborn = tmp_path / "stubborn.sh"
    stubborn.write_text(
        f"trap '' TERM HUP INT\necho $$ > {marker}.tmp\nmv {marker}.tmp {marker}\nsleep 60\n"
    )
    text = cfg.read_text().replace(
        f'source = {{ type = "file", path = "{tmp_path / "t.csv"}" }}',
        f'source = {{ type = "command", argv = ["sh", "{stubborn}"], timeout = 120 }}',
    )
    cfg.write_text(text)
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    daemon.wait_for(lambda l: l.get("event") == "started")
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    daemon.signal(signal.SIGTERM)  # the command ignores it, and runs for 60 s
    assert daemon.wait(BOUND) == 0
    deadline = time.monotonic() + BOUND
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the source command outlived the daemon"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
