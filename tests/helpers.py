"""Test helpers: fixtures for the simulator, configs in tmp_path, real subprocesses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import structlog.testing
from structlog.contextvars import merge_contextvars

from syncd.cmdb.client import CmdbClient
from syncd.config.load import load_settings
from syncd.config.settings import Settings
from syncd.engine.reconcile import Reconciler
from syncd.engine.report import CycleReport
from syncd.state import StateStore
from syncd.support import log as syncd_log

REPO = Path(__file__).resolve().parent.parent
ASST = "bk_switch_connect_host"


def fixture_dict(
    switches: int = 20, hosts: int = 200, mapping: str = "n:n", existing: list[tuple[int, int]] = ()
) -> dict[str, Any]:
    """Switches 1..switches, hosts 1001..1000+hosts, one switch->host model association."""
    return {
        "apps": [{"bk_app_code": "syncd", "bk_app_secret": "s3cret-app"}],
        "instance_ranges": {"bk_switch": [1, switches], "host": [1001, 1000 + hosts]},
        "model_associations": [
            {
                "bk_obj_asst_id": ASST,
                "bk_obj_id": "bk_switch",
                "bk_asst_id": "connect",
                "bk_asst_obj_id": "host",
                "mapping": mapping,
            }
        ],
        "instance_associations": [
            {"bk_obj_asst_id": ASST, "bk_inst_id": s, "bk_asst_inst_id": d} for s, d in existing
        ],
    }


def capture_logs() -> Any:
    """structlog's capture_logs, with the bound context (relation, cycle) merged in."""
    return structlog.testing.capture_logs(processors=[merge_contextvars])


@asynccontextmanager
async def engine_for(
    settings: Settings, *, seed: int | None = None, **engine_kw: Any
) -> AsyncIterator[Reconciler]:
    """A Reconciler over the config's state file and a fresh client, both closed afterwards."""
    store, _ = StateStore.open(settings.state.path)
    try:
        async with CmdbClient(settings.cmdb, seed=seed) as client:
            yield Reconciler(settings, client, store, **engine_kw)
    finally:
        store.close()


async def run_cycle(
    settings: Settings, *, resync: bool = False
) -> tuple[CycleReport, list[dict[str, Any]]]:
    """One cycle by a fresh engine (as after a restart), with its log lines."""
    async with engine_for(settings) as engine:
        with capture_logs() as logs:
            report = await engine.cycle(resync=resync)
    return report, logs


def write_csv(
    path: Path, pairs: list[tuple[Any, Any]], header: str = "bk_inst_id,bk_asst_inst_id"
) -> Path:
    path.write_text(header + "\n" + "".join(f"{s},{d}\n" for s, d in pairs), encoding="utf-8")
    return path


def write_config(
    tmp_path: Path,
    url: str,
    topology: Path,
    *,
    gateway: str = "esb",
    extra: str = "",
    cmdb_extra: str = "",
    sync_extra: str = "",
    rate_limit: float = 200,
    concurrency: int = 8,
    retry_cap: float = 0.2,
    interval: float = 0.2,
    shutdown_deadline: float = 5,
) -> Path:
    """A one-relation config for tests: fast retries and cycles, ops off."""
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f"""
[cmdb]
url = "{url}"
gateway = "{gateway}"
app_code = "syncd"
app_secret = "s3cret-app"
username = "admin"
rate_limit = {rate_limit}
concurrency = {concurrency}
retry_base = 0.01
retry_cap = {retry_cap}
{cmdb_extra}

[state]
path = "{tmp_path / "state.db"}"

[sync]
interval = {interval}
shutdown_deadline = {shutdown_deadline}
{sync_extra}

[ops]
enabled = false

[[relations]]
name = "switch-host"
bk_obj_id = "bk_switch"
bk_asst_obj_id = "host"
bk_obj_asst_id = "{ASST}"
source = {{ type = "file", path = "{topology}" }}
{extra}
""",
        encoding="utf-8",
    )
    return cfg


def load(cfg: Path) -> Settings:
    return load_settings(cfg)


def pair_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "pair"]


class Proc:
    """A real subprocess; reader threads collect its stdout JSON lines and stderr."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.err: list[str] = []
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=REPO,
        )
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            text = text.rstrip("\n")
            self.raw.append(text)
            try:
                doc = json.loads(text)
            except ValueError:
                continue
            if isinstance(doc, dict):
                self.lines.append(doc)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for text in self.proc.stderr:
            self.err.append(text)

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, start: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines[start:]):
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                self._threads[0].join(5)
                for line in list(self.lines[start:]):
                    if pred(line):
                        return line
                raise AssertionError(
                    f"process exited {self.proc.returncode} first; stderr: {self.stderr()[-2000:]}"
                )
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting; last lines: {self.raw[-5:]}")

    def count(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for line in list(self.lines) if pred(line))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def stderr(self) -> str:
        return "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Ran:
    """What ``syncd ARGS`` run in this process left: its exit status, stdout and stderr."""

    code: int
    stdout: str
    stderr: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    """stdout's JSON log lines, as :class:`Proc` collects them."""


def run_syncd(*args: str) -> Ran:
    """``syncd ARGS`` through ``syncd.cli.main`` in this process, as ``python -m syncd``
    runs it (the exit status is what ``main`` returns or raises), for a test where a
    subprocess proves nothing extra: no signal, kill, pidfile or start-up in question.
    It saves the ~1 CPU-second of starting and importing a second interpreter. ``once``
    and ``run`` install the daemon's signal handlers, so call it from the main thread
    (a sync test); the logging set-up and the signal mask are put back afterwards."""
    from syncd.cli import main

    saved, fast = structlog.get_config(), syncd_log._fast
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    out, err = StringIO(), StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        structlog.configure(**saved)
        syncd_log._fast = fast
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    ran = Ran(code, out.getvalue(), err.getvalue())
    for text in ran.stdout.splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(text)
            if isinstance(doc, dict):
                ran.lines.append(doc)
    return ran


class ThreadSimulator:
    """A simulator serving on loopback from its own event loop in a thread of the test
    process. For syncd, a subprocess under test, it is the same server over real HTTP;
    the test saves starting and importing a second interpreter. ``kill`` stops it (the
    ``procs`` fixture calls it, as for a process)."""

    def __init__(self, simulator: Any) -> None:
        self.simulator = simulator
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise AssertionError("the simulator did not start within 20 s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            # Requests still held (a long poll of a killed daemon) end with the loop.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(_reap(pending))
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.simulator.running(host="127.0.0.1", port=0) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def kill(self) -> None:
        stop = self._stop
        if stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)


async def _reap(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def start_simulator(procs: list[Any], fixture: Path, *args: str) -> str:
    """A simulator of ``fixture`` with the command line's options (``--latency-ms 20``,
    ...), served in this process (see ThreadSimulator); its URL."""
    from cmdb_simulator import cli as sim_cli

    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    options = parser.parse_args(["--fixture", str(fixture), *args])
    sim = ThreadSimulator(sim_cli.simulator_from_args(options))
    procs.append(sim)
    return sim.url


NETBOX_473_WEBHOOKS = REPO / "tests" / "sources" / "fixtures" / "netbox-4.7.3-webhooks"
"""Real deliveries recorded from a running NetBox 4.7.3 (their README says what each is),
kept in the repository so the tests need nothing beside the clone."""


def delivery(number: str) -> dict[str, Any]:
    """A real NetBox 4.7.3 webhook delivery by its number (``001``): the recorded POST, its
    ``body`` as bytes; fails (not skips) when it is not there."""
    found = sorted(NETBOX_473_WEBHOOKS.glob(f"{number}-*.json"))
    assert found, f"no delivery {number} in {NETBOX_473_WEBHOOKS}"
    doc: dict[str, Any] = json.loads(found[0].read_text("utf-8"))
    doc["body"] = doc["body"].encode("utf-8")
    return doc
