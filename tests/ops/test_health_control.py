"""Health answers on a fake clock; ``syncd resync`` plumbing (pidfile, SIGHUP, HTTP)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.runtime.control import (
    ControlError,
    ops_url_for,
    read_pidfile,
    remove_pidfile,
    request_resync,
    write_pidfile,
)
from syncd.runtime.health import Health
from syncd.runtime.metrics import Metrics
from syncd.runtime.ops import OpsServer

# -- health --------------------------------------------------------------------


def test_alive_grace_at_start_then_heartbeat() -> None:
    now = [0.0]
    h = Health(max_age=60, stale_after=10, clock=lambda: now[0])
    now[0] = 9
    assert h.alive() == (True, "starting")
    now[0] = 11
    ok, reason = h.alive()
    assert not ok and "no heartbeat" in reason
    h.beat()
    assert h.alive()[0]
    assert not h.alive(now[0] + 10.5)[0]


def test_ready_needs_a_recent_clean_cycle() -> None:
    now = [0.0]
    h = Health(max_age=60, clock=lambda: now[0])
    assert h.ready() == (False, "no cycle finished yet")
    h.cycle_finished(True, {"relations_failed": 0})
    assert h.ready()[0]
    now[0] = 61
    assert not h.ready()[0]
    h.cycle_finished(False, {})
    assert h.ready() == (False, "last cycle failed for a relation")
    assert h.snapshot()["cycles"] == 2


async def test_heartbeat_loop_beats_until_stopped() -> None:
    h = Health(max_age=60)
    stop = asyncio.Event()
    task = asyncio.create_task(h.heartbeat_loop(stop, period=0.01))
    await asyncio.sleep(0.05)
    assert h.last_beat is not None
    stop.set()
    await asyncio.wait_for(task, 1)


# -- pidfile -------------------------------------------------------------------


def test_pidfile_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "syncd.pid"
    write_pidfile(path)
    assert path.read_text() == f"{os.getpid()}\n"
    remove_pidfile(path)
    assert not path.exists()


def test_remove_pidfile_leaves_another_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "syncd.pid"
    path.write_text("1\n")
    remove_pidfile(path)
    assert path.exists()


def test_missing_and_stale_pidfiles_say_so(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="does not exist"):
        read_pidfile(tmp_path / "none.pid")
    junk = tmp_path / "junk.pid"
    junk.write_text("hello\n")
    with pytest.raises(ControlError, match="does not hold a pid"):
        read_pidfile(junk)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{dead.pid}\n")
    with pytest.raises(ControlError, match=f"stale pidfile .*no process {dead.pid}"):
        read_pidfile(stale)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_refuses_to_signal_a_process_that_is_not_syncd(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "syncd.pid"
    path.write_text(f"{sleeper.pid}\n")
    with pytest.raises(ControlError, match="is not syncd"):
        request_resync(pidfile=path, ops_url=None)
    assert sleeper.poll() is None


# The positive paths (a locked syncd gets the SIGHUP, a second writer is refused) are in
# tests/test_pidfile.py, with a stand-in that takes the pidfile's lock as syncd does.


# -- resync over HTTP ----------------------------------------------------------


async def test_resync_prefers_the_ops_endpoint(tmp_path: Path) -> None:
    calls: list[int] = []
    server = OpsServer(Health(max_age=1), Metrics(process_metrics=False), lambda: calls.append(1),
                       port=0)  # fmt: skip
    url = await server.start()
    try:
        msg = await asyncio.to_thread(request_resync, pidfile=tmp_path / "unused.pid", ops_url=url)
    finally:
        await server.stop()
    # No resync token: SIGHUP (which lifts the guards) was tried first; the endpoint says
    # its resync lifts none.
    assert msg.startswith(f"resync requested via {url}/resync; prune guards stay")
    assert calls == [1]


def test_unreachable_ops_falls_back_and_reports_both(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as err:
        request_resync(pidfile=tmp_path / "none.pid", ops_url="http://127.0.0.1:9", timeout=2)
    text = str(err.value)
    assert "cannot reach http://127.0.0.1:9/resync" in text
    assert "does not exist" in text


def test_nowhere_to_send() -> None:
    with pytest.raises(ControlError, match="nowhere"):
        request_resync(pidfile=None, ops_url=None)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:9108"),
        ("::", "http://[::1]:9108"),
        ("127.0.0.1", "http://127.0.0.1:9108"),
        ("::1", "http://[::1]:9108"),
    ],
)
def test_ops_url_for(host: str, url: str) -> None:
    assert ops_url_for(host, 9108) == url
