"""A real ``syncd run`` process talks sd_notify to a real datagram socket, as under systemd.

The test plays systemd's part: it binds the AF_UNIX datagram socket, starts the
daemon with NOTIFY_SOCKET (a path, or ``@abstract``) and WATCHDOG_USEC in its
environment against the built-in simulator, and reads what arrives:
READY=1 once config is valid and state is open, STATUS= with a cycle summary,
WATCHDOG=1 every WatchdogSec/2 from the event loop, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opstools import REPO, bind_notify_socket

from tests import helpers
from tests.helpers import ThreadSimulator

DEMO = REPO / "config" / "demo"
WATCHDOG_USEC = 400_000  # pings every 0.2 s


class Lines:
    """A child process whose stdout is read line by line on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def json_line(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                seen += 1
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and pred(obj):
                    return obj
            if self.proc.poll() is not None and seen >= len(self.lines):
                break
            time.sleep(0.02)
        pytest.fail(f"no matching line; output so far:\n{self.output()}", pytrace=False)

    def output(self) -> str:
        return "\n".join(self.lines[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class NotifySocket:
    """systemd's side: a bound datagram socket; messages are collected on a thread."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode("utf-8")))

    def wait_for(
        self, pred: Callable[[str], bool], timeout: float, what: str, start: int = 0
    ) -> int:
        """Index of the first message from ``start`` on that matches ``pred``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (_, msg) in enumerate(list(self.messages)):
                if i >= start and pred(msg):
                    return i
            time.sleep(0.02)
        pytest.fail(f"no {what} within {timeout}s; got {self.summary()}", pytrace=False)

    def summary(self) -> list[str]:
        """The messages with runs of repeats folded (``WATCHDOG=1 x40``)."""
        out: list[str] = []
        for key, run in itertools.groupby(self.texts()):
            n = len(list(run))
            out.append(key if n == 1 else f"{key} x{n}")
        return out

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    sock, address = bind_notify_socket(request.param, tmp_path)
    ns = NotifySocket(sock, address)
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture
def procs() -> Iterator[list[Lines | ThreadSimulator]]:
    running: list[Lines | ThreadSimulator] = []
    try:
        yield running
    finally:
        for proc in reversed(running):
            if isinstance(proc, ThreadSimulator):
                proc.kill()
            else:
                proc.stop()


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "NOTIFY_"))}
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    # The syncd under test is this checkout's, whatever the venv has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_simulator(procs: list[Lines | ThreadSimulator], tmp_path: Path) -> str:
    """The demo's simulator, with the command line's defaults, served from a thread of this
    process: the daemon is the process under test."""
    return helpers.start_simulator(procs, DEMO / "fixture.yaml")


def demo_config(tmp_path: Path) -> Path:
    """The demo config and topology, copied so the state file lands in tmp_path."""
    shutil.copyfile(DEMO / "topology.csv", tmp_path / "topology.csv")
    cfg = tmp_path / "syncd.toml"
    shutil.copyfile(DEMO / "syncd.toml", cfg)
    return cfg


def start_daemon(
    procs: list[Lines | ThreadSimulator],
    tmp_path: Path,
    url: str,
    notify: NotifySocket,
    **extra: str,
) -> Lines:
    env = _base_env()
    env.update(
        NOTIFY_SOCKET=notify.address,
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        SYNCD_CMDB__URL=url,
        SYNCD_STATE__PATH=str(tmp_path / "state.db"),
        SYNCD_SYNC__INTERVAL="3600",  # one cycle, then idle: the watchdog must still ping
        SYNCD_OPS__ENABLED="false",
        **extra,
    )
    daemon = Lines(["-m", "syncd", "run", "--config", str(demo_config(tmp_path))], env, tmp_path)
    procs.append(daemon)
    return daemon


def test_daemon_notifies_ready_status_watchdog_reloading_stopping(
    tmp_path: Path, notify_socket: NotifySocket, procs: list[Lines | ThreadSimulator]
) -> None:
    """One daemon through its life, as systemd sees it: READY=1, STATUS=, WATCHDOG=1 while
    idle; ``systemctl reload`` (SIGHUP): RELOADING=1 (with MONOTONIC_USEC) when the resync
    starts, READY=1 when it is done, so systemd shows the unit as reloading meanwhile;
    SIGTERM: STOPPING=1 and no READY=1 after it."""
    url = start_simulator(procs, tmp_path)
    daemon = start_daemon(procs, tmp_path, url, notify_socket)

    notify_socket.wait_for(lambda m: "READY=1" in m.split("\n"), 30, "READY=1")
    status = notify_socket.wait_for(lambda m: m.startswith("STATUS="), 30, "STATUS=")
    status_text = notify_socket.texts()[status].split("\n")[0].removeprefix("STATUS=")
    assert status_text.strip(), "STATUS= must say something (the last cycle's summary)"

    # Watchdog pings keep coming while the daemon idles between cycles.
    notify_socket.wait_for(lambda m: m == "WATCHDOG=1", 10, "WATCHDOG=1")
    time.sleep(4 * WATCHDOG_USEC / 1e6)
    pings = [t for t, m in notify_socket.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 3, notify_socket.texts()
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < WATCHDOG_USEC / 1e6, f"a ping came later than WatchdogSec: {gaps}"

    mark = len(notify_socket.messages)
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = notify_socket.wait_for(
        lambda m: m.startswith("RELOADING=1\nMONOTONIC_USEC="), 30, "RELOADING=1", start=mark
    )
    notify_socket.wait_for(
        lambda m: "READY=1" in m.split("\n"), 30, "READY=1 after RELOADING=1", start=reloading + 1
    )

    before_stop = len(notify_socket.messages)
    assert not any("STOPPING=1" in m for m in notify_socket.texts())
    daemon.proc.send_signal(signal.SIGTERM)
    stopping = notify_socket.wait_for(
        lambda m: "STOPPING=1" in m.split("\n"), 30, "STOPPING=1", start=before_stop
    )
    assert daemon.proc.wait(30) == 0, daemon.output()
    after = notify_socket.texts()[stopping + 1 :]
    assert not any("READY=1" in m for m in after), after


def test_config_error_never_signals_ready(
    tmp_path: Path, notify_socket: NotifySocket, procs: list[Lines | ThreadSimulator]
) -> None:
    """Exit 78 without READY=1: systemd sees a failed start and does not restart it."""
    env = _base_env()
    env["NOTIFY_SOCKET"] = notify_socket.address
    daemon = Lines(["-m", "syncd", "run", "--config", str(tmp_path / "missing.toml")], env,
                   tmp_path)  # fmt: skip
    procs.append(daemon)
    assert daemon.proc.wait(30) == 78, daemon.output()
    time.sleep(0.2)
    assert not any("READY=1" in m for m in notify_socket.texts())
