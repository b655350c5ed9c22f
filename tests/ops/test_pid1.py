"""syncd as PID 1 (as in a container): SIGHUP and SIGTERM still work.

PID 1 gets no default signal actions from the kernel: a signal without a handler
is simply dropped, so a daemon that relied on the default SIGTERM would never
stop in a container. This runs the real daemon as PID 1 of a fresh PID
namespace (`unshare --pid --fork`, no container runtime needed) and signals it
from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Proc, fixture_dict, start_simulator, write_config, write_csv


def _child_pid(parent: int, timeout: float = 10.0) -> int:
    """The host pid of unshare's child (PID 1 inside the namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("unshare started no child")


def test_syncd_as_pid1_handles_sighup_and_sigterm(tmp_path: Path, procs: list[Proc]) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed: apt-get install util-linux")
    fixture = tmp_path / "fixture.json"
    fixture.write_text(json.dumps(fixture_dict(switches=2, hosts=5)))
    url = start_simulator(procs, fixture)
    topology = write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)])
    cfg = write_config(tmp_path, url, topology, interval=3600)
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.fail(f"this machine cannot make a PID namespace: {probe.stderr.decode().strip()}")
    outer = Proc(
        [
            "-c",
            "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])",
            unshare,
            "--pid",
            "--fork",
            sys.executable,
            "-m",
            "syncd",
            "run",
            "--config",
            str(cfg),
        ]
    )
    procs.append(outer)
    started = outer.wait_for(lambda l: l.get("event") == "started")
    assert started["pid"] == 1  # syncd is PID 1 in its namespace
    outer.wait_for(lambda l: l.get("event") == "cycle")
    pid1 = _child_pid(outer.proc.pid)
    mark = len(outer.lines)
    os.kill(pid1, signal.SIGHUP)
    outer.wait_for(lambda l: l.get("event") == "resync", start=mark)
    os.kill(pid1, signal.SIGTERM)
    assert outer.wait(20) == 0
    assert any(l.get("event") == "stopped" for l in outer.lines)
