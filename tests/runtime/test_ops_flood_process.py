"""A real `syncd run` under a lowered open-file limit, flooded with idle connections to
its ops port that each send a partial `GET /healthz`: /healthz still answers, cycles
still read their source and state, and the idle connections are dropped."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Proc, start_simulator, write_config, write_csv
from tests.runtime.test_daemon_process import pairs, write_fixture

pytestmark = pytest.mark.slow

NOFILE = 256
"""The daemon's open-file limit here; the listener takes at most 1/8 (32 connections)."""
FLOOD = 300
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def _run_with_nofile(cfg: Path) -> list[str]:
    code = (
        "import resource, runpy, sys;"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE}));"
        f"sys.argv = ['syncd', 'run', '--config', {str(cfg)!r}];"
        "runpy.run_module('syncd', run_name='__main__', alter_sys=True)"
    )
    return ["-c", code]


def _healthz(url: str) -> int:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
        return int(resp.status)


def test_an_idle_flood_never_starves_healthz_or_the_cycles(
    tmp_path: Path, procs: list[Proc]
) -> None:
    url = start_simulator(procs, write_fixture(tmp_path, switches=2, hosts=10))
    cfg = write_config(tmp_path, url, write_csv(tmp_path / "t.csv", pairs(2, 10)), interval=1)
    env = {"SYNCD_OPS__ENABLED": "true", "SYNCD_OPS__PORT": "0"}
    daemon = Proc(_run_with_nofile(cfg), env=env)
    procs.append(daemon)
    listening = daemon.wait_for(lambda l: l.get("event") == "ops_listening")
    assert listening["open_files_limit"] == NOFILE and listening["max_connections"] == 32
    ops = str(listening["url"])
    host, port = ops.removeprefix("http://").rsplit(":", 1)
    daemon.wait_for(lambda l: l.get("event") == "cycle")
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(PARTIAL)
            flood.append(sock)
        assert _healthz(ops) == 200  # a probe gets in past the stalled clients
        mark = len(daemon.lines)
        for _ in range(3):  # cycles go on, reading the CSV and the state file
            line = daemon.wait_for(lambda l: l.get("event") == "cycle", start=mark)
            assert line["relations_failed"] == 0, line
            mark = len(daemon.lines)
        assert _healthz(ops) == 200
        # Every stalled connection is dropped (evicted, or idle past 5 s), counted.
        daemon.wait_for(
            lambda l: l.get("event") == "http_connection_dropped" and l["total"] >= FLOOD - 32,
            timeout=30,
        )
    finally:
        for sock in flood:
            sock.close()
    text = "".join(daemon.err) + "\n".join(json.dumps(l) for l in daemon.lines)
    assert "Too many open files" not in text
    assert "Traceback" not in daemon.stderr()
    dropped = [l for l in daemon.lines if l.get("event") == "http_connection_dropped"]
    assert len(dropped) <= 4  # counted lines, not one per connection
