"""The running daemon: watched files, the terminal progress bar, ops endpoints, `syncd resync`."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cmdb_simulator import Simulator
from syncd.runtime.daemon import Daemon
from tests.helpers import (
    REPO,
    Proc,
    capture_logs,
    fixture_dict,
    load,
    run_syncd,
    start_simulator,
    write_config,
    write_csv,
)


def fixture(tmp_path: Path) -> Path:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(fixture_dict(switches=5, hosts=50)))
    return path


async def test_watched_file_starts_a_cycle_early(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    """In process: what is tested is the file watcher waking the loop, not the process."""
    _, url = sim
    topo = write_csv(tmp_path / "t.csv", [(1, 1001)])
    cfg = write_config(tmp_path, url, topo, interval=3600)
    text = cfg.read_text().replace(
        f'path = "{topo}" }}', f'path = "{topo}", watch = true, watch_interval = 0.1 }}'
    )
    cfg.write_text(text)
    daemon = Daemon(load(cfg))
    with capture_logs() as logs:
        running = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(20):
                while not daemon.reports:  # noqa: ASYNC110 (the loop has no event to await)
                    await asyncio.sleep(0.02)
                first = daemon.reports[-1]
                write_csv(topo, [(1, 1001), (2, 1002)])
                while daemon.reports[-1] is first:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            daemon.request_stop()
            assert await running == 0
    assert any(line["event"] == "cycle_requested" for line in logs)
    assert daemon.reports[-1].total("created") == 1


def test_progress_bar_on_a_terminal(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, fixture(tmp_path))
    pairs = [(s, 1000 + h) for s in range(1, 6) for h in range(1, 51)]
    cfg = write_config(
        tmp_path, url, write_csv(tmp_path / "t.csv", pairs), cmdb_extra="batch_size = 10"
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "once", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO,
        text=True,
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    screen = b"".join(chunks).decode()
    assert "250/250 pairs sent (100%)" in screen
    # stdout stays pure JSON lines, one per detail among them.
    lines = [json.loads(line) for line in out.splitlines()]
    assert sum(1 for line in lines if line["event"] == "pair") == 250


def test_ops_endpoints_and_resync_command(tmp_path: Path, procs: list[Proc]) -> None:
    url = start_simulator(procs, fixture(tmp_path))
    topology = write_csv(tmp_path / "t.csv", [(1, 1001), (2, 1002)])
    cfg = write_config(tmp_path, url, topology, interval=3600)
    text = cfg.read_text().replace(
        "[ops]\nenabled = false",
        f'[ops]\nenabled = true\nport = 0\npidfile = "{tmp_path / "syncd.pid"}"',
    )
    cfg.write_text(text)
    daemon = Proc(["-m", "syncd", "run", "--config", str(cfg)])
    procs.append(daemon)
    ops = daemon.wait_for(lambda l: l.get("event") == "started")["ops"]
    daemon.wait_for(lambda l: l.get("event") == "cycle")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(ops + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    assert get("/healthz")[0] == 200
    deadline = time.monotonic() + 5
    while get("/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get("/readyz")[0] == 200
    status, metrics = get("/metrics")
    assert status == 200
    assert 'syncd_pairs_total{outcome="created",relation="switch-host"} 2.0' in metrics
    assert "s3cret-app" not in metrics
    # POST /resync on the ops endpoint ...
    mark = len(daemon.lines)
    req = urllib.request.Request(ops + "/resync", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 202
    daemon.wait_for(lambda l: l.get("event") == "resync", start=mark)
    # ... and `syncd resync` (its main here), which finds the daemon through its pidfile.
    mark = len(daemon.lines)
    done = run_syncd("resync", "--config", str(cfg))
    assert done.code == 0, done.stderr
    assert "SIGHUP" in done.stdout
    daemon.wait_for(lambda l: l.get("event") == "resync", start=mark)
